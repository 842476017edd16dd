//! The `context` object a script's `process(context)` receives, and its native functions
//! (`input`, `output`, `validate`, `route`, `utils`), with the per-batch [`State`] they read and
//! write. `install_api` also defines the JavaScript side of the row loop (`__fe_drive`), whose
//! host calls `__fe_begin`/`__fe_step` start and end each row here. The engine ([`super::engine`])
//! installs it once per compiled script and sets the active state around each slice of a batch.

use std::cell::RefCell;
use std::rc::Rc;

use boa_engine::object::builtins::{JsArray, JsDate};
use boa_engine::object::{FunctionObjectBuilder, ObjectInitializer};
use boa_engine::property::{Attribute, PropertyDescriptor, PropertyKey};
use boa_engine::{
    Context, JsNativeError, JsObject, JsResult, JsString, JsValue, NativeFunction, Script, Source,
};
use flowengine_engine::error::RowErrorKind;

use super::config::{JsConfig, Limits};
use super::log::Level;
use super::shape::{BatchOut, RowFault, Shape};
use super::values::{self, describe, Column, Scalar};

/// JavaScript objects the natives need to reach.
pub(super) struct Api {
    row: JsObject,
}

pub(super) fn install_api(ctx: &mut Context) -> JsResult<Api> {
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
    pub(super) script_name: String,
    pub(super) limits: Limits,
    /// The input columns the script can read from its row object, with their property keys, made
    /// once per engine.
    keys: Vec<(usize, PropertyKey)>,
    /// Per input column, its value on the row numbered by the serial beside it: converted when
    /// the script first reads it on a row, or assigned by the script.
    values: Vec<(u64, JsValue)>,
    /// Counts rows begun on this engine, so a cached value is never taken for another row's.
    serial: u64,
    /// The batch's input columns.
    pub columns: Vec<Column>,
    /// The row `process` is working on.
    pub row: usize,
    /// The row's source line.
    pub line: u64,
    /// When the current row started, kept only under `TimeoutPerRow`.
    row_started: Option<std::time::Instant>,
    staged: Staged,
    /// Results so far for this batch.
    pub out: BatchOut,
}

/// What the script did to the current row.
#[derive(Debug, Default)]
struct Staged {
    slots: Vec<Option<Scalar>>,
    problems: Vec<RowFault>,
    messages: Vec<String>,
    send: u64,
    copy: u64,
}

impl State {
    pub(super) fn new(api: Api, shape: Option<std::sync::Arc<Shape>>, config: &JsConfig) -> Self {
        let keys = shape
            .as_ref()
            .map(|s| {
                s.input_names
                    .iter()
                    .enumerate()
                    .filter(|&(c, _)| s.row_reads[c])
                    .map(|(c, n)| (c, PropertyKey::from(JsString::from(n.as_str()))))
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
            values: Vec::new(),
            serial: 1,
            row_started: None,
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
    pub fn begin_batch(&mut self, columns: Vec<Column>, out: BatchOut) {
        self.values.resize(columns.len(), (0, JsValue::undefined()));
        self.columns = columns;
        self.out = out;
        self.serial += 1;
    }

    /// The row object's properties: one accessor per column the script can read, which converts
    /// the column's value the first time the script reads it on a row (a row whose script reads
    /// two columns converts two), and takes an assignment for the rest of the row.
    pub(super) fn define_row(&self, ctx: &mut Context) -> JsResult<()> {
        for (c, key) in &self.keys {
            let c = *c;
            let get = NativeFunction::from_copy_closure(move |_, _, ctx| row_get(c, ctx));
            let set = NativeFunction::from_copy_closure(move |_, args, ctx| row_set(c, args, ctx));
            let get = FunctionObjectBuilder::new(ctx.realm(), get).build();
            let set = FunctionObjectBuilder::new(ctx.realm(), set).build();
            let property = PropertyDescriptor::builder()
                .get(get)
                .set(set)
                .enumerable(true)
                .configurable(true);
            self.api
                .row
                .define_property_or_throw(key.clone(), property, ctx)?;
        }
        Ok(())
    }

    /// When the current row must be done by, under `TimeoutPerRow`.
    pub fn row_deadline(&self) -> Option<std::time::Instant> {
        Some(self.row_started? + self.limits.row_timeout?)
    }

    /// Hand the batch in progress to another engine (after a row deadline left this one unusable).
    pub fn take_batch(&mut self) -> (Vec<Column>, BatchOut) {
        (
            std::mem::take(&mut self.columns),
            std::mem::take(&mut self.out),
        )
    }

    /// Forget the row that just failed and record why.
    pub fn fail_row(&mut self, problem: RowFault) {
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
pub(super) struct Active;

impl Active {
    pub(super) fn set(state: Rc<RefCell<State>>) -> Self {
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
        self.serial += 1;
        if self.limits.row_timeout.is_some() {
            self.row_started = Some(std::time::Instant::now());
        }
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
                RowFault::new(
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
            let fault = super::shape::validation_fault(&self.staged.messages);
            self.staged.problems.push(fault);
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
    Ok(state(ctx)?.borrow().api.row.clone().into())
}

/// The row object's getter for column `c`.
fn row_get(c: usize, ctx: &mut Context) -> JsResult<JsValue> {
    let state = state(ctx)?;
    let mut s = state.borrow_mut();
    let serial = s.serial;
    if let Some((at, v)) = s.values.get(c) {
        if *at == serial {
            return Ok(v.clone());
        }
    }
    // Converting a value runs no script code, so the state can stay borrowed meanwhile.
    let v = s.columns[c].to_js(s.row, ctx)?;
    if let Some(slot) = s.values.get_mut(c) {
        *slot = (serial, v.clone());
    }
    Ok(v)
}

/// The row object's setter for column `c`: the value holds until the row ends.
fn row_set(c: usize, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let state = state(ctx)?;
    let mut s = state.borrow_mut();
    let serial = s.serial;
    if let Some(slot) = s.values.get_mut(c) {
        *slot = (serial, arg(args, 0));
    }
    Ok(JsValue::undefined())
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
                let problem = RowFault::new(
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
            let problem =
                super::shape::conversion_fault(&field, index, &ty, &why, values::describe(&value));
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
            let problem = RowFault::new(
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
