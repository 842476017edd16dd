//! One compiled script in one boa `Context`, on one thread.
//!
//! A batch runs as a loop *inside* JavaScript (`__fe_drive(from, to)`), so the only host
//! crossings per row are the `context` calls the script makes. The loop is evaluated with boa's
//! instruction budget: every few thousand instructions control comes back here, which is where
//! the batch's wall-clock deadline is enforced — from outside the engine, so `while (true) {}` in a
//! `try` cannot hold the run. The same check enforces `TimeoutPerRow` against the time the current
//! row started. Loop and recursion limits are boa's own and cannot be caught by the
//! script either.
//!
//! The `context` object and the per-batch state its calls work on are in [`super::api`]; the
//! engines themselves live in a thread-local map, one per transform per thread ([`with_engine`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use boa_engine::error::{EngineError, RuntimeLimitError};
use boa_engine::{Context, JsError, JsResult, JsString, JsValue, Script, Source};
use flowengine_engine::error::RowErrorKind;

use super::api::{install_api, Active, State};
use super::config::{JsConfig, Limits};
use super::shape::{RowFault, Shape};
use super::values::describe;

/// `utils.log` levels (defined in [`super::log`]), also at this path, which benches use.
pub use super::log::Level;

/// Instruction "cost" between two deadline checks: small enough to stop a runaway batch within
/// milliseconds, large enough that checking the clock costs nothing.
const BUDGET: u32 = 20_000;

/// Why a script cannot be used, found when it is compiled.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script does not parse.
    #[error("the script does not compile: {0}")]
    Syntax(String),
    /// Running the top level threw or hit a limit.
    #[error("the script's top level failed: {0}")]
    TopLevel(String),
    /// No `process` function.
    #[error("the script does not define a function `process`")]
    NoProcess,
}

impl ScriptError {
    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            ScriptError::Syntax(_) => "line:column are counted from the first line of the script",
            ScriptError::TopLevel(_) => "the top level runs once per engine, before any row; keep it to declarations",
            ScriptError::NoProcess => "define `function process(context) { … return true; }` (an arrow function assigned to `process` works too)",
        }
    }
}

/// How a slice of a batch ended early.
#[derive(Debug)]
pub enum Stop {
    /// The current row threw or hit a loop or recursion limit; the rest of the batch can go on.
    Row(RowFault),
    /// The batch ran past its deadline; the engine is unusable and the run must stop.
    Deadline,
    /// The current row ran past `TimeoutPerRow`; the engine is unusable, the rest of the batch
    /// can go on with a fresh one.
    RowDeadline,
    /// boa panicked on the current row (its own bug, e.g. `-2147483648 % -1`); the engine is
    /// unusable, the rest of the batch can go on with a fresh one.
    Panic(String),
    /// The engine itself failed.
    Fatal(String),
}

/// A compiled script and the state its `context` calls work on.
pub struct Engine {
    ctx: Context,
    driver: Script,
    state: Rc<RefCell<State>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Compile `config`'s script and run its top level, as a build would: the plan-time check.
pub fn check_script(config: &JsConfig) -> Result<(), ScriptError> {
    Engine::new(config, None).map(drop)
}

impl Engine {
    /// A fresh context with the script's top level run and `process` found. With a `shape`, the
    /// engine is ready for batches of that transform.
    pub fn new(
        config: &JsConfig,
        shape: Option<std::sync::Arc<Shape>>,
    ) -> Result<Self, ScriptError> {
        let mut ctx = Context::default();
        let limits = ctx.runtime_limits_mut();
        limits.set_loop_iteration_limit(config.limits.loop_iterations);
        limits.set_recursion_limit(config.limits.recursion);
        let name = Path::new(&config.script_name);
        let source = Source::from_bytes(config.script.as_bytes()).with_path(name);
        let script = Script::parse(source, None, &mut ctx).map_err(|e| {
            // boa adds " (native)" for errors raised by its parser, which is Rust code.
            ScriptError::Syntax(e.to_string().trim_end_matches(" (native)").to_string())
        })?;
        let deadline = Instant::now() + config.limits.batch_timeout;
        match run_until(&script, &mut ctx, deadline, || None) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let (message, _) = describe_error(e, &mut ctx, &config.script_name, &config.limits);
                return Err(ScriptError::TopLevel(message));
            }
            Err(_) => {
                return Err(ScriptError::TopLevel(format!(
                    "it ran past `BatchTimeoutMs` ({} ms)",
                    config.limits.batch_timeout.as_millis()
                )))
            }
        }
        // `typeof`, not a global-object lookup: `const process = …` is not a property of it.
        let probe = Script::parse(Source::from_bytes("typeof process"), None, &mut ctx)
            .and_then(|probe| probe.evaluate(&mut ctx))
            .map_err(|e| ScriptError::TopLevel(e.to_string()))?;
        if probe
            .as_string()
            .map(|t| t.to_std_string_escaped())
            .as_deref()
            != Some("function")
        {
            return Err(ScriptError::NoProcess);
        }
        let api = install_api(&mut ctx).map_err(|e| ScriptError::TopLevel(e.to_string()))?;
        let driver = Script::parse(
            Source::from_bytes("__fe_drive(__fe_from, __fe_to)"),
            None,
            &mut ctx,
        )
        .map_err(|e| ScriptError::Syntax(e.to_string()))?;
        let state = State::new(api, shape, config);
        state
            .define_row(&mut ctx)
            .map_err(|e| ScriptError::TopLevel(e.to_string()))?;
        let state = Rc::new(RefCell::new(state));
        Ok(Self { ctx, driver, state })
    }

    /// The state of the batch in progress.
    pub fn state(&self) -> std::cell::RefMut<'_, State> {
        self.state.borrow_mut()
    }

    /// Run `process` on rows `from..to` of the current batch.
    pub fn drive(&mut self, from: usize, to: usize, deadline: Instant) -> Result<(), Stop> {
        let _active = Active::set(Rc::clone(&self.state));
        let global = self.ctx.global_object();
        for (name, v) in [("__fe_from", from), ("__fe_to", to)] {
            global
                .set(
                    JsString::from(name),
                    JsValue::new(v as f64),
                    true,
                    &mut self.ctx,
                )
                .map_err(|e| Stop::Fatal(e.to_string()))?;
        }
        let state = Rc::clone(&self.state);
        let row_deadline = move || state.try_borrow().ok()?.row_deadline();
        match run_until(&self.driver, &mut self.ctx, deadline, row_deadline) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let (script_name, limits) = {
                    let s = self.state.borrow();
                    (s.script_name.clone(), s.limits)
                };
                let limit = matches!(e.as_engine(), Some(EngineError::RuntimeLimit(_)));
                if let Some(EngineError::Panic(p)) = e.as_engine() {
                    return Err(Stop::Fatal(format!("the JavaScript engine failed: {p}")));
                }
                let (message, hint) = describe_error(e, &mut self.ctx, &script_name, &limits);
                let kind = if limit {
                    RowErrorKind::ScriptLimit
                } else {
                    RowErrorKind::ScriptError
                };
                Err(Stop::Row(RowFault::new(kind, message).with_hint(hint)))
            }
            Err(Expired::Batch) => Err(Stop::Deadline),
            Err(Expired::Row) => Err(Stop::RowDeadline),
            Err(Expired::Panic(message)) => Err(Stop::Panic(message)),
        }
    }
}

thread_local! {
    /// Whether this thread is inside boa, where a panic is caught and becomes the row's error.
    static IN_BOA: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keep the panic hook from printing panics caught inside boa; every other panic is printed by
/// the hook that was there before.
fn quiet_boa_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_BOA.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}

/// What stopped a script before its end.
enum Expired {
    Batch,
    Row,
    /// boa panicked, with this message.
    Panic(String),
}

/// Evaluate `script`, giving up at `deadline` or at the current row's deadline, whichever comes
/// first (the context is then unusable).
fn run_until(
    script: &Script,
    ctx: &mut Context,
    deadline: Instant,
    row_deadline: impl Fn() -> Option<Instant>,
) -> Result<JsResult<JsValue>, Expired> {
    let mut future = std::pin::pin!(script.evaluate_async_with_budget(ctx, BUDGET));
    let mut cx = std::task::Context::from_waker(Waker::noop());
    loop {
        // A panic inside boa is boa's bug; it must cost the row, not the run (and it is reported
        // as the row's error, not printed).
        quiet_boa_panics();
        IN_BOA.with(|b| b.set(true));
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut cx)
        }));
        IN_BOA.with(|b| b.set(false));
        let polled = polled.map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Expired::Panic(message)
        })?;
        match polled {
            Poll::Ready(result) => return Ok(result),
            Poll::Pending => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Expired::Batch);
                }
                if row_deadline().is_some_and(|d| now >= d) {
                    return Err(Expired::Row);
                }
            }
        }
    }
}

/// The message of a thrown value or engine error, with the script position when boa knows it, and
/// a hint.
fn describe_error(
    e: JsError,
    ctx: &mut Context,
    script_name: &str,
    limits: &Limits,
) -> (String, String) {
    if let Some(EngineError::RuntimeLimit(limit)) = e.as_engine() {
        return describe_limit(*limit, limits);
    }
    if let Some(engine) = e.as_engine() {
        return (format!("the engine stopped: {engine}"), String::new());
    }
    let hint = "catch it in the script (try/catch) to handle the row yourself, or fix the data";
    let Ok(value) = e.into_opaque(ctx) else {
        return ("the script failed".into(), hint.into());
    };
    let text = |key: &str, ctx: &mut Context| -> Option<String> {
        let v = value.as_object()?.get(JsString::from(key), ctx).ok()?;
        v.as_string().map(|s| s.to_std_string_escaped())
    };
    let message = match (text("name", ctx), text("message", ctx)) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        _ => match value.as_string() {
            Some(s) => s.to_std_string_escaped(),
            None => describe(&value),
        },
    };
    let position = text("stack", ctx).and_then(|stack| script_position(&stack, script_name));
    let message = match position {
        Some((line, col)) => format!("threw {message} (at {script_name}:{line}:{col})"),
        None => format!("threw {message}"),
    };
    (message, hint.into())
}

fn describe_limit(limit: RuntimeLimitError, limits: &Limits) -> (String, String) {
    match limit {
        RuntimeLimitError::LoopIteration => (
            format!(
                "more than `MaxLoopIterations` ({}) loop iterations in one call",
                limits.loop_iterations
            ),
            "look for a loop that never ends (a try/catch cannot stop this limit), or raise `MaxLoopIterations`".into(),
        ),
        RuntimeLimitError::Recursion => (
            format!("calls nested deeper than `MaxRecursion` ({})", limits.recursion),
            "look for a function that calls itself without end, or raise `MaxRecursion`".into(),
        ),
        RuntimeLimitError::StackSize => (
            "the script's value stack grew past boa's limit".into(),
            "look for runaway recursion or huge array literals".into(),
        ),
    }
}

/// The innermost `name:line:col` of the script in a boa stack trace.
fn script_position(stack: &str, script_name: &str) -> Option<(u32, u32)> {
    let needle = format!("({script_name}:");
    let start = stack.find(&needle)? + needle.len();
    let rest = &stack[start..];
    let end = rest.find(')')?;
    let (line, col) = rest[..end].split_once(':')?;
    Some((line.parse().ok()?, col.parse().ok()?))
}

/// Engines of this thread, by transform id. Kept out of the thread's destructors: boa's collector
/// lives in thread-local storage too, and may be gone by the time ours runs.
type Engines = HashMap<u64, std::mem::ManuallyDrop<Engine>>;

thread_local! {
    static ENGINES: RefCell<Engines> = RefCell::new(HashMap::new());
}

/// Run `f` with this thread's engine for transform `id`, making it first if needed.
pub fn with_engine<T>(
    id: u64,
    make: impl FnOnce() -> Result<Engine, ScriptError>,
    f: impl FnOnce(&mut Engine) -> T,
) -> Result<T, ScriptError> {
    ENGINES.with(|cell| {
        let mut engines = cell.borrow_mut();
        let engine = match engines.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(std::mem::ManuallyDrop::new(make()?))
            }
        };
        Ok(f(engine))
    })
}

/// Drop this thread's engine for `id` (after a deadline left it unusable, or when the transform
/// ends on this thread).
pub fn discard_engine(id: u64) {
    let engine = ENGINES.with(|cell| cell.try_borrow_mut().ok()?.remove(&id));
    if let Some(engine) = engine {
        drop(std::mem::ManuallyDrop::into_inner(engine));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_positions_are_read_from_boa_stacks() {
        let stack = "    at process (enrich.Script:3:15)\n    at __fe_drive (<main>:1:2)\n";
        assert_eq!(script_position(stack, "enrich.Script"), Some((3, 15)));
        assert_eq!(script_position(stack, "other"), None);
    }
}
