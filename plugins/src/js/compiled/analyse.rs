//! From a script's syntax tree to a [`Plan`], or the first construct that keeps it on boa.
//!
//! `process` is walked once, symbolically: every statement runs under a path condition (the
//! `if`s that lead to it), locals are bound to the values they hold, `setField`, `route.send` and
//! `return` are recorded with the path they run on. A value's JavaScript type must be known from
//! the schema and the literals alone; whatever needs run-time types, state or effects (loops,
//! assignments, `try`, calls of the script's own functions, `validate`, `utils`) is refused with
//! its position, and the script runs on boa as before.

use std::sync::Arc;

use arrow_schema::DataType;
use boa_engine::ast::declaration::{Binding, Declaration, Variable};
use boa_engine::ast::expression::access::{PropertyAccess, PropertyAccessField};
use boa_engine::ast::expression::literal::{LiteralKind, TemplateElement};
use boa_engine::ast::expression::operator::binary::{
    ArithmeticOp, BinaryOp, LogicalOp, RelationalOp,
};
use boa_engine::ast::expression::operator::unary::UnaryOp;
use boa_engine::ast::expression::Expression;
use boa_engine::ast::function::{FormalParameterList, FunctionBody};
use boa_engine::ast::scope::Scope;
use boa_engine::ast::statement::Statement;
use boa_engine::ast::{Position, Spanned, StatementListItem};
use boa_engine::interner::{Interner, Sym};
use boa_engine::parser::{Parser, Source};

use super::eval::{Arith, Cmp, Cut, Expr, MathFn, StrFn, StrTest, Ty};
use super::{Check, Plan, Refusal, Send, Set};
use crate::js::shape::Shape;

/// What a name or a sub-expression stands for.
#[derive(Debug, Clone)]
enum Handle {
    Context,
    Input,
    Row,
    Output,
    Route,
    Validate,
    Utils,
    Math,
    Null,
    Value(Expr),
}

/// Where the walk is after a statement.
#[derive(Debug, Clone)]
enum Flow {
    /// Goes on under the path it came in with.
    Same,
    /// Goes on under this narrower path.
    Narrowed(Expr),
    /// Every path has returned.
    Ended,
}

struct Analyser<'a> {
    interner: Interner,
    shape: &'a Shape,
    /// Names in scope, innermost last; a block's names go when it ends.
    scopes: Vec<Vec<(String, Handle)>>,
    /// Where the walk last was, for refusals of statements (which carry no position).
    at: Position,
    returns: Vec<(Expr, Expr)>,
    sets: Vec<Set>,
    sends: Vec<Send>,
    checks: Vec<Check>,
}

type Walk<T> = Result<T, Refusal>;

/// Analyse `script` for `shape`'s schemas.
pub fn analyse(script: &str, shape: &Shape) -> Result<Plan, Refusal> {
    let mut interner = Interner::default();
    let parsed = Parser::new(Source::from_bytes(script))
        .parse_script(&Scope::new_global(), &mut interner)
        .map_err(|e| Refusal::new(format!("the parser said: {e}"), Position::new(1, 1)))?;
    let mut a = Analyser {
        interner,
        shape,
        scopes: vec![Vec::new()],
        at: Position::new(1, 1),
        returns: Vec::new(),
        sets: Vec::new(),
        sends: Vec::new(),
        checks: Vec::new(),
    };
    let (params, body) = a.top_level(parsed.statements().statements())?;
    a.process(params, body)?;
    let keep = a
        .returns
        .iter()
        .fold(Expr::Bool(false), |keep, (path, value)| {
            Expr::or(keep, Expr::and(path.clone(), value.clone()))
        });
    let mut value_reads = Vec::new();
    for e in std::iter::once(&keep)
        .chain(
            a.sets
                .iter()
                .flat_map(|s| [Some(&s.path), s.value.as_ref()])
                .flatten(),
        )
        .chain(a.sends.iter().map(|s| &s.path))
        .chain(
            a.checks
                .iter()
                .flat_map(|c| [Some(&c.path), Some(&c.passes), c.message.as_ref()])
                .flatten(),
        )
    {
        e.columns_read(&mut value_reads);
    }
    value_reads.sort_unstable();
    value_reads.dedup();
    Ok(Plan {
        keep,
        sets: a.sets,
        sends: a.sends,
        checks: a.checks,
        value_reads,
    })
}

impl Analyser<'_> {
    fn name(&self, sym: Sym) -> String {
        self.interner.resolve_expect(sym).to_string()
    }

    fn text(&self, sym: Sym) -> String {
        String::from_utf16_lossy(self.interner.resolve_expect(sym).utf16())
    }

    fn refuse<T>(&self, what: impl Into<String>) -> Walk<T> {
        Err(Refusal::new(what.into(), self.at))
    }

    fn refuse_at<T>(&mut self, e: &Expression, what: impl Into<String>) -> Walk<T> {
        self.at = e.span().start();
        self.refuse(what)
    }

    /// The top level: `process` and constants. Anything else runs code once per engine.
    fn top_level<'s>(
        &mut self,
        items: &'s [StatementListItem],
    ) -> Walk<(&'s FormalParameterList, &'s FunctionBody)> {
        let mut process = None;
        for item in items {
            let vars: &[Variable] = match item {
                StatementListItem::Declaration(d) => match &**d {
                    Declaration::FunctionDeclaration(f) => {
                        self.at = f.body().span().start();
                        if self.name(f.name().sym()) != "process" {
                            return self.refuse(format!(
                                "the script defines function `{}` besides `process`",
                                self.name(f.name().sym())
                            ));
                        }
                        process = Some((f.parameters(), f.body()));
                        continue;
                    }
                    Declaration::Lexical(l) => l.variable_list().as_ref(),
                    _ => return self.refuse("a declaration other than a function or a constant"),
                },
                StatementListItem::Statement(s) => match &**s {
                    Statement::Var(v) => v.0.as_ref(),
                    Statement::Empty => continue,
                    _ => return self.refuse("a statement at the top level"),
                },
            };
            for v in vars {
                let Binding::Identifier(id) = v.binding() else {
                    return self.refuse("a destructuring declaration");
                };
                let name = self.name(id.sym());
                let Some(init) = v.init() else {
                    return self.refuse(format!("`{name}` declared without a value"));
                };
                match init.flatten() {
                    Expression::ArrowFunction(f) if name == "process" => {
                        process = Some((f.parameters(), f.body()))
                    }
                    Expression::FunctionExpression(f) if name == "process" => {
                        process = Some((f.parameters(), f.body()))
                    }
                    Expression::Literal(_) => {
                        let value = self.value(init)?;
                        self.scopes[0].push((name, value));
                    }
                    other => {
                        return self.refuse_at(
                            other,
                            format!("the global `{name}` holds something other than a literal"),
                        )
                    }
                }
            }
        }
        match process {
            Some(p) => Ok(p),
            None => self.refuse("no `process` function found"),
        }
    }

    fn process(&mut self, params: &FormalParameterList, body: &FunctionBody) -> Walk<()> {
        let params: &[_] = params.as_ref();
        if let Some(first) = params.first() {
            let (Binding::Identifier(id), None) = (first.variable().binding(), first.init()) else {
                return self.refuse("a parameter pattern or default");
            };
            let name = self.name(id.sym());
            self.scopes.push(vec![(name, Handle::Context)]);
        } else {
            self.scopes.push(Vec::new());
        }
        match self.block(body.statements(), Expr::Bool(true))? {
            Flow::Ended => Ok(()),
            _ => self.refuse(
                "a path through `process` ends without `return` (on boa that row is rejected)",
            ),
        }
    }

    fn block(&mut self, items: &[StatementListItem], path: Expr) -> Walk<Flow> {
        self.scopes.push(Vec::new());
        let mut flow = Flow::Same;
        for item in items {
            let now = match &flow {
                Flow::Same => path.clone(),
                Flow::Narrowed(p) => p.clone(),
                Flow::Ended => return self.refuse("code after a `return`"),
            };
            let step = match item {
                StatementListItem::Statement(s) => self.statement(s, now)?,
                StatementListItem::Declaration(d) => match &**d {
                    Declaration::Lexical(l) => {
                        self.declare(l.variable_list().as_ref())?;
                        Flow::Same
                    }
                    _ => return self.refuse("a function or class declared inside `process`"),
                },
            };
            flow = match (flow, step) {
                (_, Flow::Ended) => Flow::Ended,
                (f, Flow::Same) => f,
                (_, Flow::Narrowed(p)) => Flow::Narrowed(p),
            };
        }
        self.scopes.pop();
        Ok(flow)
    }

    fn declare(&mut self, vars: &[Variable]) -> Walk<()> {
        for v in vars {
            let Binding::Identifier(id) = v.binding() else {
                return self.refuse("a destructuring declaration");
            };
            let name = self.name(id.sym());
            self.at = id.span().start();
            if self.lookup(&name).is_some() {
                return self.refuse(format!("`{name}` is declared twice"));
            }
            let Some(init) = v.init() else {
                return self.refuse(format!("`{name}` declared without a value"));
            };
            let value = self.value(init)?;
            if let Some(scope) = self.scopes.last_mut() {
                scope.push((name, value));
            }
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<&Handle> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|s| s.iter().rev())
            .find(|(n, _)| n == name)
            .map(|(_, h)| h)
    }

    fn statement(&mut self, s: &Statement, path: Expr) -> Walk<Flow> {
        match s {
            Statement::Var(v) => {
                self.declare(v.0.as_ref())?;
                Ok(Flow::Same)
            }
            Statement::Empty => Ok(Flow::Same),
            Statement::Block(b) => self.block(b.statement_list().statements(), path),
            Statement::Expression(e) => {
                self.effect(e, path)?;
                Ok(Flow::Same)
            }
            Statement::Return(r) => {
                let Some(e) = r.target() else {
                    return self.refuse("`return` without a value (on boa that row is rejected)");
                };
                match self.value(e)? {
                    Handle::Value(v) if v.ty() == Ty::Bool => {
                        self.returns.push((path, v));
                        Ok(Flow::Ended)
                    }
                    _ => self.refuse_at(
                        e,
                        "`return` of something other than a boolean (on boa that row is rejected)",
                    ),
                }
            }
            Statement::If(i) => {
                let c = self.condition(i.cond())?;
                let then_path = Expr::and(path.clone(), c.clone());
                let else_path = Expr::and(path.clone(), Expr::negate(c));
                let then_flow = self.branch(i.body(), then_path.clone())?;
                let else_flow = match i.else_node() {
                    Some(e) => self.branch(e, else_path.clone())?,
                    None => Flow::Same,
                };
                Ok(match (then_flow, else_flow) {
                    (Flow::Ended, Flow::Ended) => Flow::Ended,
                    (Flow::Same, Flow::Same) => Flow::Same,
                    (Flow::Ended, other) => Flow::Narrowed(Self::resolve(other, else_path)),
                    (other, Flow::Ended) => Flow::Narrowed(Self::resolve(other, then_path)),
                    (a, b) => Flow::Narrowed(Expr::or(
                        Self::resolve(a, then_path),
                        Self::resolve(b, else_path),
                    )),
                })
            }
            Statement::WhileLoop(w) => self.refuse_at(w.condition(), "a `while` loop"),
            Statement::DoWhileLoop(_) => self.refuse("a `do … while` loop"),
            Statement::ForLoop(f) => match f.condition() {
                Some(c) => self.refuse_at(c, "a `for` loop"),
                None => self.refuse("a `for` loop"),
            },
            Statement::ForInLoop(_) | Statement::ForOfLoop(_) => {
                self.refuse("a `for … in/of` loop")
            }
            Statement::Switch(sw) => self.refuse_at(sw.val(), "a `switch`"),
            Statement::Throw(t) => self.refuse_at(t.target(), "a `throw`"),
            Statement::Try(_) => self.refuse("a `try`"),
            _ => self.refuse("a statement outside the compiled subset"),
        }
    }

    /// A branch of an `if`, in a scope of its own.
    fn branch(&mut self, s: &Statement, path: Expr) -> Walk<Flow> {
        self.scopes.push(Vec::new());
        let flow = self.statement(s, path);
        self.scopes.pop();
        flow
    }

    fn resolve(flow: Flow, entered: Expr) -> Expr {
        match flow {
            Flow::Narrowed(p) => p,
            _ => entered,
        }
    }

    /// A call `target.method(args)`: what the target is, the method's name and the arguments.
    fn method_call<'c>(
        &mut self,
        e: &Expression,
        call: &'c boa_engine::ast::expression::Call,
    ) -> Walk<(Handle, String, &'c [Expression])> {
        let Expression::PropertyAccess(PropertyAccess::Simple(access)) = call.function().flatten()
        else {
            return self.refuse_at(e, "a call of the script's own function");
        };
        let target = self.value(access.target())?;
        let method = self.field_name(access.field())?;
        Ok((target, method, call.args()))
    }

    /// An expression statement: `setField`, `route.send` or `route.sendCopy`.
    fn effect(&mut self, e: &Expression, path: Expr) -> Walk<()> {
        let Expression::Call(call) = e.flatten() else {
            return self.refuse_at(e, "an expression statement other than a `context` call");
        };
        let (target, method, args) = self.method_call(e, call)?;
        match (target, method.as_str()) {
            (Handle::Output, "setField") => {
                let name = self.literal_text(e, args.first(), "setField's field name")?;
                let Some(field) = self.shape.field_index(&name) else {
                    return self
                        .refuse_at(e, format!("setField(\"{name}\") of an undeclared field"));
                };
                let value = match args.get(1).map(|v| self.value(v)).transpose()? {
                    Some(Handle::Value(v)) => Some(v),
                    Some(Handle::Null) => None,
                    _ => {
                        return self.refuse_at(
                            e,
                            "setField with a value that is not a number, string or boolean",
                        )
                    }
                };
                self.sets.push(Set { field, path, value });
                Ok(())
            }
            (Handle::Route, m @ ("send" | "sendCopy")) => {
                let copy = m == "sendCopy";
                let port = self.literal_text(e, args.first(), "the port name")?;
                let Some(k) = self.shape.ports.iter().position(|p| *p == port) else {
                    return self.refuse_at(e, format!("a send to the undeclared port `{port}`"));
                };
                self.sends.push(Send {
                    port: k,
                    copy,
                    path,
                });
                Ok(())
            }
            (Handle::Validate, "check") => {
                let passes = match args.first() {
                    Some(c) => self.condition(c)?,
                    None => Expr::Bool(false),
                };
                let message = match args.get(1).map(|m| self.value(m)).transpose()? {
                    None => None,
                    Some(Handle::Value(m)) => Some(match m.ty() {
                        Ty::Str => m,
                        _ => Expr::Concat(vec![m]),
                    }),
                    Some(_) => {
                        return self.refuse_at(
                            e,
                            "a check message that is not a number, string or boolean",
                        )
                    }
                };
                self.checks.push(Check {
                    path,
                    passes,
                    message,
                });
                Ok(())
            }
            (Handle::Validate, "required") => {
                let Some(Expression::ArrayLiteral(list)) = args.first().map(Expression::flatten)
                else {
                    return self
                        .refuse_at(e, "validate.required without an array literal of names");
                };
                for item in list.as_ref() {
                    let name = self.literal_text(e, item.as_ref(), "a required field name")?;
                    let (passes, message) = match self.shape.input_index(&name) {
                        None => (
                            Expr::Bool(false),
                            format!("required field `{name}` is not an input column"),
                        ),
                        Some(c) => (
                            Expr::negate(Expr::IsNull(c)),
                            format!("required field `{name}` is null"),
                        ),
                    };
                    let message = Some(Expr::Str(Arc::from(message)));
                    self.checks.push(Check {
                        path: path.clone(),
                        passes,
                        message,
                    });
                }
                Ok(())
            }
            (_, m) => self.refuse_at(e, format!("a call of `{m}` as a statement")),
        }
    }

    fn literal_text(
        &mut self,
        at: &Expression,
        arg: Option<&Expression>,
        what: &str,
    ) -> Walk<String> {
        match arg.map(Expression::flatten) {
            Some(Expression::Literal(l)) => match l.kind() {
                LiteralKind::String(s) => Ok(self.text(*s)),
                _ => self.refuse_at(at, format!("{what} is not a string literal")),
            },
            _ => self.refuse_at(at, format!("{what} is not a string literal")),
        }
    }

    fn field_name(&mut self, field: &PropertyAccessField) -> Walk<String> {
        match field {
            PropertyAccessField::Const(id) => Ok(self.name(id.sym())),
            PropertyAccessField::Expr(e) => match e.flatten() {
                Expression::Literal(l) => match l.kind() {
                    LiteralKind::String(s) => Ok(self.text(*s)),
                    _ => self.refuse_at(e, "a computed property name"),
                },
                other => self.refuse_at(other, "a computed property name"),
            },
        }
    }

    /// A value as a condition (`if`, `!`, `?:`, `&&`/`||` inside one).
    fn condition(&mut self, e: &Expression) -> Walk<Expr> {
        match e.flatten() {
            Expression::Binary(b) if b.op() == BinaryOp::Logical(LogicalOp::And) => {
                let (l, r) = (self.condition(b.lhs())?, self.condition(b.rhs())?);
                Ok(Expr::and(l, r))
            }
            Expression::Binary(b) if b.op() == BinaryOp::Logical(LogicalOp::Or) => {
                let (l, r) = (self.condition(b.lhs())?, self.condition(b.rhs())?);
                Ok(Expr::or(l, r))
            }
            Expression::Unary(u) if u.op() == UnaryOp::Not => {
                Ok(Expr::negate(self.condition(u.target())?))
            }
            _ => {
                let v = self.expr(e)?;
                Ok(Expr::truthy(v))
            }
        }
    }

    /// A value that must be a number, string or boolean.
    fn expr(&mut self, e: &Expression) -> Walk<Expr> {
        match self.value(e)? {
            Handle::Value(v) => Ok(v),
            Handle::Null => self.refuse_at(e, "`null` used as a value"),
            _ => self.refuse_at(e, "an object used as a value"),
        }
    }

    fn value(&mut self, e: &Expression) -> Walk<Handle> {
        self.at = e.span().start();
        match e.flatten() {
            Expression::Identifier(id) => {
                let name = self.name(id.sym());
                if let Some(h) = self.lookup(&name) {
                    return Ok(h.clone());
                }
                match name.as_str() {
                    "NaN" => Ok(Handle::Value(Expr::Num(f64::NAN))),
                    "Infinity" => Ok(Handle::Value(Expr::Num(f64::INFINITY))),
                    "Math" => Ok(Handle::Math),
                    _ => self.refuse(format!("the global `{name}`")),
                }
            }
            Expression::Literal(l) => Ok(match l.kind() {
                LiteralKind::String(s) => Handle::Value(Expr::Str(Arc::from(self.text(*s)))),
                LiteralKind::Num(n) => Handle::Value(Expr::Num(*n)),
                LiteralKind::Int(n) => Handle::Value(Expr::Num(f64::from(*n))),
                LiteralKind::Bool(b) => Handle::Value(Expr::Bool(*b)),
                LiteralKind::Null => Handle::Null,
                _ => return self.refuse("a BigInt or `undefined` literal"),
            }),
            Expression::TemplateLiteral(t) => {
                let mut parts = Vec::new();
                for element in t.elements() {
                    parts.push(match element {
                        TemplateElement::String(s) => Expr::Str(Arc::from(self.text(*s))),
                        TemplateElement::Expr(e) => self.expr(e)?,
                    });
                }
                Ok(Handle::Value(Expr::Concat(parts)))
            }
            Expression::PropertyAccess(PropertyAccess::Simple(access)) => {
                let target = self.value(access.target())?;
                let field = self.field_name(access.field())?;
                self.property(e, target, &field)
            }
            Expression::Call(call) => self.call(e, call),
            Expression::Binary(b) => self.binary(e, b.op(), b.lhs(), b.rhs()),
            Expression::Unary(u) => match u.op() {
                UnaryOp::Not => Ok(Handle::Value(Expr::negate(self.condition(u.target())?))),
                UnaryOp::Minus | UnaryOp::Plus => {
                    let v = self.expr(u.target())?;
                    if v.ty() != Ty::Num {
                        return self
                            .refuse_at(e, format!("unary minus or plus of a {}", v.ty().name()));
                    }
                    Ok(Handle::Value(if u.op() == UnaryOp::Minus {
                        Expr::Neg(Box::new(v))
                    } else {
                        v
                    }))
                }
                _ => self.refuse_at(e, "`typeof`, `void`, `delete` or `~`"),
            },
            Expression::Conditional(c) => {
                let cond = self.condition(c.condition())?;
                let (a, b) = (self.expr(c.if_true())?, self.expr(c.if_false())?);
                if a.ty() != b.ty() {
                    return self.refuse_at(e, "`?:` whose branches have different types");
                }
                Ok(Handle::Value(match cond {
                    Expr::Bool(true) => a,
                    Expr::Bool(false) => b,
                    cond => Expr::Select(Box::new(cond), Box::new(a), Box::new(b)),
                }))
            }
            Expression::Assign(_) | Expression::Update(_) => {
                self.refuse("an assignment (state changes run on boa)")
            }
            Expression::ArrowFunction(_) | Expression::FunctionExpression(_) => {
                self.refuse("a function inside `process`")
            }
            Expression::ObjectLiteral(_) | Expression::ArrayLiteral(_) => {
                self.refuse("an object or array literal")
            }
            Expression::RegExpLiteral(_) => self.refuse("a regular expression"),
            Expression::New(_) => self.refuse("`new`"),
            _ => self.refuse("an expression outside the compiled subset"),
        }
    }

    fn property(&mut self, e: &Expression, target: Handle, field: &str) -> Walk<Handle> {
        match (target, field) {
            (Handle::Context, "input") => Ok(Handle::Input),
            (Handle::Context, "output") => Ok(Handle::Output),
            (Handle::Context, "route") => Ok(Handle::Route),
            (Handle::Context, "validate") => Ok(Handle::Validate),
            (Handle::Context, "utils") => Ok(Handle::Utils),
            (Handle::Row, name) => self.column(e, name, false),
            (Handle::Value(v), "length") if v.ty() == Ty::Str => {
                Ok(Handle::Value(Expr::Length(Box::new(v))))
            }
            (Handle::Math, "PI") => Ok(Handle::Value(Expr::Num(std::f64::consts::PI))),
            (Handle::Math, "E") => Ok(Handle::Value(Expr::Num(std::f64::consts::E))),
            (_, name) => self.refuse_at(e, format!("the property `{name}`")),
        }
    }

    /// An input column, by its exact name (`row.x`) or case-insensitively (`getValue('x')`).
    fn column(&mut self, e: &Expression, name: &str, any_case: bool) -> Walk<Handle> {
        let index = if any_case {
            self.shape.input_index(name)
        } else {
            self.shape.input_names.iter().position(|n| n == name)
        };
        let Some(c) = index else {
            return self.refuse_at(e, format!("`{name}`, which is not an input column"));
        };
        let ty = match self.shape.input_type(c) {
            DataType::Utf8 => Ty::Str,
            DataType::Boolean => Ty::Bool,
            DataType::Int32 | DataType::Int64 | DataType::Float32 | DataType::Float64 => Ty::Num,
            DataType::Decimal128(p, _) if *p <= 15 => Ty::Num,
            other => {
                return self.refuse_at(
                    e,
                    format!(
                    "the {other} column `{name}` (not a number, string or boolean in JavaScript)"
                ),
                )
            }
        };
        Ok(Handle::Value(Expr::Column(c, ty)))
    }

    fn call(&mut self, e: &Expression, call: &boa_engine::ast::expression::Call) -> Walk<Handle> {
        let (target, method, args) = self.method_call(e, call)?;
        match (target, method.as_str()) {
            (Handle::Input, "current") if args.is_empty() => Ok(Handle::Row),
            (Handle::Input, "getValue") => {
                let name = self.literal_text(e, args.first(), "getValue's column name")?;
                self.column(e, &name, true)
            }
            (Handle::Value(v), m) if v.ty() == Ty::Str => {
                let one = |f| Ok(Handle::Value(Expr::Str1(f, Box::new(v.clone()))));
                match (m, args.len()) {
                    ("toUpperCase", 0) => one(StrFn::Upper),
                    ("toLowerCase", 0) => one(StrFn::Lower),
                    ("trim", 0) => one(StrFn::Trim),
                    ("trimStart", 0) => one(StrFn::TrimStart),
                    ("trimEnd", 0) => one(StrFn::TrimEnd),
                    ("slice" | "substring", 1 | 2) => {
                        let mut positions = Vec::new();
                        for a in args {
                            let p = self.expr(a)?;
                            if p.ty() != Ty::Num {
                                return self.refuse_at(a, format!("`{m}` at a {}", p.ty().name()));
                            }
                            positions.push(p);
                        }
                        let how = if m == "slice" {
                            Cut::Slice
                        } else {
                            Cut::Substring
                        };
                        let mut positions = positions.into_iter().map(Box::new);
                        let start = positions.next().unwrap_or_else(|| Box::new(Expr::Num(0.0)));
                        Ok(Handle::Value(Expr::Cut(
                            how,
                            Box::new(v),
                            start,
                            positions.next(),
                        )))
                    }
                    ("includes" | "startsWith" | "endsWith", 1) => {
                        let arg = self.expr(&args[0])?;
                        if arg.ty() != Ty::Str {
                            return self.refuse_at(e, format!("`{m}` of a {}", arg.ty().name()));
                        }
                        let test = match m {
                            "includes" => StrTest::Includes,
                            "startsWith" => StrTest::StartsWith,
                            _ => StrTest::EndsWith,
                        };
                        Ok(Handle::Value(Expr::Test(test, Box::new(v), Box::new(arg))))
                    }
                    _ => self.refuse_at(e, format!("the string method `{m}`")),
                }
            }
            (Handle::Utils, "format") if args.len() == 2 => {
                let value = self.expr(&args[0])?;
                let format = self.literal_text(e, args.get(1), "the format")?;
                let accepted = match value.ty() {
                    Ty::Num => crate::js::format::format_number(0.0, &format).is_ok(),
                    _ => format.is_empty(),
                };
                if !accepted {
                    return self.refuse_at(
                        e,
                        format!(
                            "utils.format of a {} with {format:?} (it throws)",
                            value.ty().name()
                        ),
                    );
                }
                Ok(Handle::Value(Expr::Format(
                    Box::new(value),
                    Arc::from(format),
                )))
            }
            (Handle::Math, m) => {
                let f = match m {
                    "abs" => MathFn::Abs,
                    "floor" => MathFn::Floor,
                    "ceil" => MathFn::Ceil,
                    "round" => MathFn::Round,
                    "trunc" => MathFn::Trunc,
                    "sqrt" => MathFn::Sqrt,
                    "sign" => MathFn::Sign,
                    "min" => MathFn::Min,
                    "max" => MathFn::Max,
                    _ => return self.refuse_at(e, format!("`Math.{m}`")),
                };
                let one = !matches!(f, MathFn::Min | MathFn::Max);
                if one && args.len() != 1 {
                    return self.refuse_at(e, format!("`Math.{m}` with {} arguments", args.len()));
                }
                let mut values = Vec::new();
                for a in args {
                    let v = self.expr(a)?;
                    if v.ty() != Ty::Num {
                        return self.refuse_at(a, format!("`Math.{m}` of a {}", v.ty().name()));
                    }
                    values.push(v);
                }
                Ok(Handle::Value(Expr::Math(f, values)))
            }
            (_, m) => self.refuse_at(e, format!("a call of `{m}`")),
        }
    }

    fn binary(
        &mut self,
        e: &Expression,
        op: BinaryOp,
        l: &Expression,
        r: &Expression,
    ) -> Walk<Handle> {
        if let BinaryOp::Relational(rel) = op {
            if let Some(test) = self.null_test(rel, l, r)? {
                return Ok(Handle::Value(test));
            }
        }
        let (a, b) = (self.expr(l)?, self.expr(r)?);
        let (ta, tb) = (a.ty(), b.ty());
        let value = match op {
            BinaryOp::Arithmetic(ArithmeticOp::Add) if ta == Ty::Num && tb == Ty::Num => {
                Expr::Arith(Arith::Add, Box::new(a), Box::new(b))
            }
            BinaryOp::Arithmetic(ArithmeticOp::Add) if ta == Ty::Str || tb == Ty::Str => {
                let mut parts = Vec::new();
                for x in [a, b] {
                    match x {
                        Expr::Concat(inner) => parts.extend(inner),
                        x => parts.push(x),
                    }
                }
                Expr::Concat(parts)
            }
            BinaryOp::Arithmetic(op) if ta == Ty::Num && tb == Ty::Num => {
                let op = match op {
                    ArithmeticOp::Sub => Arith::Sub,
                    ArithmeticOp::Mul => Arith::Mul,
                    ArithmeticOp::Div => Arith::Div,
                    ArithmeticOp::Mod => Arith::Rem,
                    _ => return self.refuse_at(e, "`**`"),
                };
                Expr::Arith(op, Box::new(a), Box::new(b))
            }
            BinaryOp::Arithmetic(_) => {
                return self.refuse_at(
                    e,
                    format!("arithmetic on a {} and a {}", ta.name(), tb.name()),
                )
            }
            BinaryOp::Relational(rel) => {
                let (cmp, strict) = match rel {
                    RelationalOp::Equal => (Cmp::Eq, false),
                    RelationalOp::NotEqual => (Cmp::Ne, false),
                    RelationalOp::StrictEqual => (Cmp::Eq, true),
                    RelationalOp::StrictNotEqual => (Cmp::Ne, true),
                    RelationalOp::LessThan => (Cmp::Lt, false),
                    RelationalOp::LessThanOrEqual => (Cmp::Le, false),
                    RelationalOp::GreaterThan => (Cmp::Gt, false),
                    RelationalOp::GreaterThanOrEqual => (Cmp::Ge, false),
                    _ => return self.refuse_at(e, "`in` or `instanceof`"),
                };
                let equality = matches!(cmp, Cmp::Eq | Cmp::Ne);
                if ta != tb {
                    if strict {
                        // Different types are never strictly equal.
                        return Ok(Handle::Value(Expr::Bool(cmp == Cmp::Ne)));
                    }
                    return self.refuse_at(
                        e,
                        format!(
                            "a comparison of a {} with a {} (JavaScript converts one of them)",
                            ta.name(),
                            tb.name()
                        ),
                    );
                }
                if ta == Ty::Bool && !equality {
                    return self.refuse_at(e, "an ordering of booleans");
                }
                Expr::Cmp(cmp, Box::new(a), Box::new(b))
            }
            BinaryOp::Logical(LogicalOp::Coalesce) if ta == tb => a,
            BinaryOp::Logical(op @ (LogicalOp::And | LogicalOp::Or)) if ta == tb => {
                let and = op == LogicalOp::And;
                if ta == Ty::Bool {
                    if and {
                        Expr::and(a, b)
                    } else {
                        Expr::or(a, b)
                    }
                } else {
                    // `a && b` is `a` when `a` is falsy, else `b`; `a || b` the other way round.
                    let t = Expr::truthy(a.clone());
                    let (yes, no) = if and { (b, a) } else { (a, b) };
                    Expr::Select(Box::new(t), Box::new(yes), Box::new(no))
                }
            }
            BinaryOp::Logical(_) => {
                return self.refuse_at(
                    e,
                    format!("`&&`, `||` or `??` of a {} and a {}", ta.name(), tb.name()),
                )
            }
            _ => return self.refuse_at(e, "a bitwise operator or a comma"),
        };
        Ok(Handle::Value(value))
    }

    /// `x == null`, `null != x`, `x === null` …: a null test of a column, or a constant.
    fn null_test(
        &mut self,
        rel: RelationalOp,
        l: &Expression,
        r: &Expression,
    ) -> Walk<Option<Expr>> {
        let negated = match rel {
            RelationalOp::Equal | RelationalOp::StrictEqual => false,
            RelationalOp::NotEqual | RelationalOp::StrictNotEqual => true,
            _ => return Ok(None),
        };
        let is_null = |e: &Expression| matches!(e.flatten(), Expression::Literal(lit) if matches!(lit.kind(), LiteralKind::Null));
        let other = match (is_null(l), is_null(r)) {
            (true, true) => return Ok(Some(Expr::Bool(!negated))),
            (true, false) => r,
            (false, true) => l,
            (false, false) => return Ok(None),
        };
        let test = match self.value(other)? {
            Handle::Value(Expr::Column(c, _)) => Expr::IsNull(c),
            Handle::Value(_) => Expr::Bool(false),
            Handle::Null => Expr::Bool(true),
            _ => return self.refuse_at(other, "an object compared with null"),
        };
        Ok(Some(if negated { Expr::negate(test) } else { test }))
    }
}
