//! One compiled script in one boa `Context`, on one thread.
//!
//! A batch runs as a loop *inside* JavaScript (`__fe_drive(from, to)`), so the only host
//! crossings per row are the `context` calls the script makes. The loop is evaluated with boa's
//! instruction budget: every few thousand instructions control comes back here, which is where
//! the batch's wall-clock deadline is enforced — from outside the engine, so `while (true) {}` in a
//! `try` cannot hold the run. Loop and recursion limits are boa's own and cannot be caught by the
//! script either.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use boa_engine::error::{EngineError, RuntimeLimitError};
use boa_engine::object::builtins::{JsArray, JsDate};
use boa_engine::object::{FunctionObjectBuilder, ObjectInitializer};
use boa_engine::property::{Attribute, PropertyKey};
use boa_engine::{
    Context, JsError, JsNativeError, JsObject, JsResult, JsString, JsValue, NativeFunction, Script,
    Source,
};
use flowengine_engine::error::RowErrorKind;

use super::config::{JsConfig, Limits};
use super::transform::{Problem, Shape};
use super::values::{self, describe, Column, Scalar};

/// Instruction "cost" between two deadline checks: small enough to stop a runaway batch within
/// milliseconds, large enough that checking the clock costs nothing.
const BUDGET: u32 = 20_000;

/// `utils.log` levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// trace
    Trace,
    /// debug
    Debug,
    /// info
    Info,
    /// warn
    Warn,
    /// error
    Error,
}

impl Level {
    /// Accepted spellings for `LogLevel`.
    pub const CHOICES: [(&'static str, Level); 5] = [
        ("trace", Level::Trace),
        ("debug", Level::Debug),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ];

    /// A level as scripts write it (the original's names are accepted too).
    fn parse(written: &str) -> Option<Level> {
        Some(match written.trim().to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" | "information" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "critical" | "fatal" => Level::Error,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

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
    Row(Problem),
    /// The batch ran past its deadline; the engine is unusable and the run must stop.
    Deadline,
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
        match run_until(&script, &mut ctx, deadline) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let (message, _) = describe_error(e, &mut ctx, &config.script_name, &config.limits);
                return Err(ScriptError::TopLevel(message));
            }
            Err(()) => {
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
        let state = Rc::new(RefCell::new(State::new(api, shape, config)));
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
        match run_until(&self.driver, &mut self.ctx, deadline) {
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
                Err(Stop::Row(Problem::new(kind, message).with_hint(hint)))
            }
            Err(()) => Err(Stop::Deadline),
        }
    }
}

/// Evaluate `script`, giving up at `deadline` (`Err(())`; the context is then unusable).
fn run_until(
    script: &Script,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<JsResult<JsValue>, ()> {
    let mut future = std::pin::pin!(script.evaluate_async_with_budget(ctx, BUDGET));
    let mut cx = std::task::Context::from_waker(Waker::noop());
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(result) => return Ok(result),
            Poll::Pending if Instant::now() >= deadline => return Err(()),
            Poll::Pending => {}
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

/// JavaScript objects the natives need to reach.
struct Api {
    row: JsObject,
}

fn install_api(ctx: &mut Context) -> JsResult<Api> {
    let f = NativeFunction::from_fn_ptr;
    let line = FunctionObjectBuilder::new(ctx.realm(), f(input_line)).build();
    let input = ObjectInitializer::new(ctx)
        .function(f(input_current), JsString::from("current"), 0)
        .function(f(input_get_value), JsString::from("getValue"), 1)
        .function(f(input_schema), JsString::from("schema"), 0)
        // Getters: computed only when a script asks, rather than set on every row.
        .accessor(
            JsString::from("rowNumber"),
            Some(line.clone()),
            None,
            Attribute::all(),
        )
        .accessor(JsString::from("line"), Some(line), None, Attribute::all())
        .build();
    let output = ObjectInitializer::new(ctx)
        .function(f(output_set_field), JsString::from("setField"), 2)
        .build();
    let validate = ObjectInitializer::new(ctx)
        .function(f(validate_required), JsString::from("required"), 1)
        .function(f(validate_check), JsString::from("check"), 2)
        .function(f(validate_get_errors), JsString::from("getErrors"), 0)
        .build();
    let route = ObjectInitializer::new(ctx)
        .function(f(route_send), JsString::from("send"), 1)
        .function(f(route_send_copy), JsString::from("sendCopy"), 1)
        .build();
    let utils = ObjectInitializer::new(ctx)
        .function(f(utils_now), JsString::from("now"), 0)
        .function(f(utils_new_guid), JsString::from("newGuid"), 0)
        .function(f(utils_format), JsString::from("format"), 2)
        .function(f(utils_log), JsString::from("log"), 2)
        .build();
    let context = ObjectInitializer::new(ctx)
        .property(JsString::from("input"), input, Attribute::all())
        .property(JsString::from("output"), output, Attribute::all())
        .property(JsString::from("validate"), validate, Attribute::all())
        .property(JsString::from("route"), route, Attribute::all())
        .property(JsString::from("utils"), utils, Attribute::all())
        .build();
    let row = JsObject::with_object_proto(ctx.intrinsics());
    let hidden = Attribute::WRITABLE | Attribute::CONFIGURABLE;
    ctx.register_global_property(JsString::from("__fe_ctx"), context, hidden)?;
    ctx.register_global_property(JsString::from("__fe_from"), 0, hidden)?;
    ctx.register_global_property(JsString::from("__fe_to"), 0, hidden)?;
    ctx.register_global_callable(JsString::from("__fe_begin"), 1, f(begin_row))?;
    ctx.register_global_callable(JsString::from("__fe_step"), 1, f(step_row))?;
    // `__fe_step` ends the current row with `process`'s result and begins the next: one host call
    // per row besides the script's own.
    let drive = Script::parse(
        Source::from_bytes(
            "function __fe_drive(from, to) { var c = __fe_ctx; __fe_begin(from); for (var i = from; i < to; i++) { __fe_step(process(c)); } }",
        ),
        None,
        ctx,
    )?;
    drive.evaluate(ctx)?;
    Ok(Api { row })
}

/// What the `context` calls read and write while a batch runs.
pub struct State {
    api: Api,
    shape: Option<std::sync::Arc<Shape>>,
    script_name: String,
    limits: Limits,
    /// Property keys of the input columns, made once per engine.
    keys: Vec<PropertyKey>,
    /// The batch's input columns.
    pub columns: Vec<Column>,
    /// The row `process` is working on.
    pub row: usize,
    /// The row's source line.
    pub line: u64,
    row_filled: bool,
    staged: Staged,
    /// Results so far for this batch.
    pub out: super::transform::BatchOut,
}

/// What the script did to the current row.
#[derive(Debug, Default)]
struct Staged {
    slots: Vec<Option<Scalar>>,
    problems: Vec<Problem>,
    messages: Vec<String>,
    send: u64,
    copy: u64,
}

impl State {
    fn new(api: Api, shape: Option<std::sync::Arc<Shape>>, config: &JsConfig) -> Self {
        let keys = shape
            .as_ref()
            .map(|s| {
                s.input_names
                    .iter()
                    .map(|n| PropertyKey::from(JsString::from(n.as_str())))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            api,
            shape,
            script_name: config.script_name.clone(),
            limits: config.limits,
            keys,
            columns: Vec::new(),
            row: 0,
            line: 0,
            row_filled: false,
            staged: Staged::default(),
            out: Default::default(),
        }
    }

    fn shape(&self) -> JsResult<&Shape> {
        self.shape.as_deref().ok_or_else(|| {
            JsNativeError::error()
                .with_message("no batch is running")
                .into()
        })
    }

    /// Start a batch.
    pub fn begin_batch(&mut self, columns: Vec<Column>, out: super::transform::BatchOut) {
        self.columns = columns;
        self.out = out;
    }

    /// Forget the row that just failed and record why.
    pub fn fail_row(&mut self, problem: Problem) {
        self.staged = Staged::default();
        let row = self.row;
        self.out.reject(row, vec![problem]);
    }
}

thread_local! {
    /// The state of the engine running on this thread, set for the duration of `Engine::drive`.
    /// Cheaper per call than boa's host-data map; one thread runs one script at a time.
    static ACTIVE: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

/// Sets [`ACTIVE`], and clears it when dropped (also on unwinding).
struct Active;

impl Active {
    fn set(state: Rc<RefCell<State>>) -> Self {
        ACTIVE.with(|a| *a.borrow_mut() = Some(state));
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.borrow_mut().take());
    }
}

fn state(_: &Context) -> JsResult<Rc<RefCell<State>>> {
    ACTIVE.with(|a| a.borrow().clone()).ok_or_else(|| {
        JsNativeError::error()
            .with_message("no batch is running")
            .into()
    })
}

fn arg(args: &[JsValue], i: usize) -> JsValue {
    args.get(i).cloned().unwrap_or_default()
}

fn arg_text(args: &[JsValue], i: usize, what: &str) -> JsResult<String> {
    match args.get(i).and_then(JsValue::as_string) {
        Some(s) => Ok(values::text(&s)),
        None => Err(JsNativeError::typ()
            .with_message(format!(
                "{what} must be a string, got {}",
                describe(&arg(args, i))
            ))
            .into()),
    }
}

fn begin_row(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let state = state(ctx)?;
    let row = arg(args, 0).as_number().unwrap_or(0.0) as usize;
    state.borrow_mut().begin_row(row);
    Ok(JsValue::undefined())
}

fn step_row(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let state = state(ctx)?;
    let mut s = state.borrow_mut();
    s.end_row(&arg(args, 0))?;
    let next = s.row + 1;
    s.begin_row(next);
    Ok(JsValue::undefined())
}

fn input_line(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    Ok(JsValue::new(state(ctx)?.borrow().line as f64))
}

impl State {
    fn begin_row(&mut self, row: usize) {
        self.row = row;
        self.line = self.out.line(row);
        self.row_filled = false;
        let fields = self.shape.as_ref().map_or(0, |s| s.fields.len());
        let staged = &mut self.staged;
        staged.slots.clear();
        staged.slots.resize(fields, None);
        staged.problems.clear();
        staged.messages.clear();
        staged.send = 0;
        staged.copy = 0;
    }

    fn end_row(&mut self, returned: &JsValue) -> JsResult<()> {
        let row = self.row;
        let Some(keep) = returned.as_boolean() else {
            let mut problems = std::mem::take(&mut self.staged.problems);
            problems.push(
                Problem::new(
                    RowErrorKind::ScriptError,
                    format!(
                        "`process` returned {}; it must return true (keep the row) or false (filter it out)",
                        describe(returned)
                    ),
                )
                .with_hint("a function that ends without `return` returns undefined"),
            );
            self.out.reject(row, problems);
            return Ok(());
        };
        if !self.staged.messages.is_empty() {
            let message = format!("validation failed: {}", self.staged.messages.join("; "));
            self.staged
                .problems
                .push(Problem::new(RowErrorKind::Validation, message).with_hint(
                "the script's context.validate calls refused the row; fix the data, or the rule",
            ));
        }
        if !self.staged.problems.is_empty() {
            let problems = std::mem::take(&mut self.staged.problems);
            self.out.reject(row, problems);
        } else if keep {
            let staged = &mut self.staged;
            let route = if staged.send == 0 { 1 } else { 0 } | staged.send | staged.copy;
            let shape = self
                .shape
                .as_deref()
                .ok_or_else(|| JsNativeError::error().with_message("no batch is running"))?;
            self.out
                .keep(row, &mut staged.slots, route, shape, &self.columns);
        }
        Ok(())
    }
}

fn input_current(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let state = state(ctx)?;
    let mut s = state.borrow_mut();
    let obj = s.api.row.clone();
    if !s.row_filled {
        // Converting values runs no script code, so the state can stay borrowed meanwhile.
        let s = &mut *s;
        for (key, col) in s.keys.iter().zip(&s.columns) {
            let v = col.to_js(s.row, ctx)?;
            obj.create_data_property_or_throw(key.clone(), v, ctx)?;
        }
        s.row_filled = true;
    }
    Ok(obj.into())
}

fn input_get_value(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let name = arg_text(args, 0, "getValue's field name")?;
    let state = state(ctx)?;
    let found = {
        let s = state.borrow();
        let shape = s.shape()?;
        shape
            .input_index(&name)
            .map(|i| (s.columns[i].clone(), s.row))
    };
    match found {
        Some((col, row)) => col.to_js(row, ctx),
        None => Ok(JsValue::null()),
    }
}

fn input_schema(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let state = state(ctx)?;
    let fields: Vec<(String, String, bool)> = {
        let s = state.borrow();
        let shape = s.shape()?;
        shape.input_fields()
    };
    let array = JsArray::new(ctx)?;
    for (i, (name, ty, nullable)) in fields.iter().enumerate() {
        let field = ObjectInitializer::new(ctx)
            .property(
                JsString::from("name"),
                JsString::from(name.as_str()),
                Attribute::all(),
            )
            .property(
                JsString::from("type"),
                JsString::from(ty.as_str()),
                Attribute::all(),
            )
            .property(JsString::from("nullable"), *nullable, Attribute::all())
            .property(JsString::from("index"), i as u32, Attribute::all())
            .build();
        array.push(field, ctx)?;
    }
    let count = fields.len() as u32;
    let schema = ObjectInitializer::new(ctx)
        .property(JsString::from("fields"), array, Attribute::all())
        .property(JsString::from("fieldCount"), count, Attribute::all())
        .build();
    Ok(schema.into())
}

fn output_set_field(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let name = arg_text(args, 0, "setField's field name")?;
    let value = arg(args, 1);
    let state = state(ctx)?;
    let (index, ty) = {
        let s = state.borrow();
        let shape = s.shape()?;
        match shape.field_index(&name) {
            Some(i) => (i, shape.fields[i].spec.ty.clone()),
            None => {
                let declared = shape.field_names();
                drop(s);
                let problem = Problem::new(
                    RowErrorKind::ScriptError,
                    format!("setField(\"{name}\"): no such output field; declared fields are: {declared}"),
                )
                .with_hint("declare it under `OutputSchema.Fields`");
                state.borrow_mut().staged.problems.push(problem);
                return Ok(JsValue::undefined());
            }
        }
    };
    let converted = values::from_js(&value, &ty, ctx);
    let mut s = state.borrow_mut();
    match converted {
        Ok(v) => s.staged.slots[index] = Some(v),
        Err(why) => {
            let field = s.shape()?.fields[index].spec.name.clone();
            let problem = Problem::new(
                RowErrorKind::TypeConversion,
                format!("setField(\"{field}\") ({ty}): {why}"),
            )
            .with_field(field, index)
            .with_value(values::describe(&value))
            .with_hint("convert it in the script (Number(x), String(x), Math.round(x)), or declare a type that fits");
            s.staged.problems.push(problem);
        }
    }
    Ok(JsValue::undefined())
}

fn validate_required(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let names = arg(args, 0);
    let list = names.as_object().filter(|o| o.is_array()).ok_or_else(|| {
        JsNativeError::typ().with_message("validate.required takes an array of field names")
    })?;
    let array = JsArray::from_object(list)?;
    let len = array.length(ctx)?;
    let mut wanted = Vec::with_capacity(len as usize);
    for i in 0..len {
        let v = array.get(i, ctx)?;
        wanted.push(v.to_string(ctx)?.to_std_string_escaped());
    }
    let state = state(ctx)?;
    let mut s = state.borrow_mut();
    let mut ok = true;
    for name in wanted {
        let message = match s.shape()?.input_index(&name) {
            None => Some(format!("required field `{name}` is not an input column")),
            Some(i) if s.columns[i].is_null(s.row) => {
                Some(format!("required field `{name}` is null"))
            }
            Some(_) => None,
        };
        if let Some(m) = message {
            s.staged.messages.push(m);
            ok = false;
        }
    }
    Ok(JsValue::new(ok))
}

fn validate_check(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let passed = arg(args, 0).to_boolean();
    if !passed {
        let message = match args.get(1) {
            Some(m) if !m.is_undefined() => m.to_string(ctx)?.to_std_string_escaped(),
            _ => "a check failed".to_string(),
        };
        state(ctx)?.borrow_mut().staged.messages.push(message);
    }
    Ok(JsValue::new(passed))
}

fn validate_get_errors(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let messages = state(ctx)?.borrow().staged.messages.clone();
    let values: Vec<JsValue> = messages
        .into_iter()
        .map(|m| JsString::from(m).into())
        .collect();
    Ok(JsArray::from_iter(values, ctx).into())
}

fn route(args: &[JsValue], ctx: &mut Context, copy: bool) -> JsResult<JsValue> {
    let port = arg_text(args, 0, "the port name")?;
    let state = state(ctx)?;
    let mut s = state.borrow_mut();
    let shape = s.shape()?;
    match shape.ports.iter().position(|p| *p == port) {
        Some(k) => {
            let bit = 1u64 << (k + 1);
            if copy {
                s.staged.copy |= bit;
            } else {
                s.staged.send |= bit;
            }
        }
        None => {
            let known = if shape.ports.is_empty() {
                "it has none".to_string()
            } else {
                format!("its ports are: {}", shape.ports.join(", "))
            };
            let problem = Problem::new(
                RowErrorKind::ScriptError,
                format!("route to unknown port `{port}`; {known}"),
            )
            .with_hint("ports are declared under `Ports` (or found from literal route.send('name') calls) and wired as `From: node.port`");
            s.staged.problems.push(problem);
        }
    }
    Ok(JsValue::undefined())
}

fn route_send(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    route(args, ctx, false)
}

fn route_send_copy(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    route(args, ctx, true)
}

fn utils_now(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    Ok(JsDate::new(ctx).into())
}

fn utils_new_guid(_: &JsValue, _: &[JsValue], _: &mut Context) -> JsResult<JsValue> {
    Ok(JsString::from(uuid::Uuid::new_v4().to_string()).into())
}

fn utils_format(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let value = arg(args, 0);
    let format = arg_text(args, 1, "the format")?;
    let text = super::format::format(&value, &format, ctx)
        .map_err(|why| JsNativeError::range().with_message(why))?;
    Ok(JsString::from(text).into())
}

fn utils_log(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let level_text = arg_text(args, 0, "the log level (first argument)")?;
    let level = Level::parse(&level_text).ok_or_else(|| {
        JsNativeError::range().with_message(format!(
            "unknown log level {level_text:?}; use trace, debug, info, warn or error (the level comes first: log('info', message))"
        ))
    })?;
    let message = arg(args, 1).to_string(ctx)?.to_std_string_escaped();
    let state = state(ctx)?;
    let s = state.borrow();
    let shape = s.shape()?;
    shape.log.write(level, s.line, &message);
    Ok(JsValue::undefined())
}

/// `utils.log` output: one line per call on stderr, prefixed with the node name, at most a burst
/// then a steady rate per node so a log call per row cannot flood the terminal.
#[derive(Debug)]
pub struct Log {
    node: String,
    min: Level,
    gate: std::sync::Mutex<Gate>,
}

#[derive(Debug)]
struct Gate {
    window: Instant,
    printed: u32,
    suppressed: u64,
}

/// Lines per second per node after which lines are counted, not printed.
const LOG_LINES_PER_SECOND: u32 = 20;

impl Log {
    /// A log for `node` printing `min` and above.
    pub fn new(node: &str, min: Level) -> Self {
        Self {
            node: node.to_string(),
            min,
            gate: std::sync::Mutex::new(Gate {
                window: Instant::now(),
                printed: 0,
                suppressed: 0,
            }),
        }
    }

    fn write(&self, level: Level, line: u64, message: &str) {
        if level < self.min {
            return;
        }
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        if gate.window.elapsed().as_secs() >= 1 {
            gate.window = Instant::now();
            gate.printed = 0;
            if gate.suppressed > 0 {
                eprintln!(
                    "[{}] {} log lines suppressed (more than {LOG_LINES_PER_SECOND} a second)",
                    self.node, gate.suppressed
                );
                gate.suppressed = 0;
            }
        }
        if gate.printed >= LOG_LINES_PER_SECOND {
            gate.suppressed += 1;
            return;
        }
        gate.printed += 1;
        eprintln!(
            "[{}] {} (line {line}): {message}",
            self.node,
            level.as_str()
        );
    }

    /// Report lines still held back at the end of the run.
    pub fn flush(&self) {
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        if gate.suppressed > 0 {
            eprintln!(
                "[{}] {} log lines suppressed (more than {LOG_LINES_PER_SECOND} a second)",
                self.node, gate.suppressed
            );
            gate.suppressed = 0;
        }
    }
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
