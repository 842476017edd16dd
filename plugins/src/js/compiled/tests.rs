//! The compiled path against boa: random scripts of the compiled subset over random typed rows
//! (extremes, NaN, -0, unicode, empty strings, nulls) must give the same kept rows, values,
//! routes, rejects and reasons both ways.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, UInt64Array,
};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field, Schema};
use flowengine_engine::component::Transform;
use flowengine_engine::error::RowError;
use flowengine_engine::schema::ColumnType;
use flowengine_engine::Batch;
use proptest::prelude::*;

use crate::js::config::{FieldSpec, JsConfig, Limits};
use crate::js::log::Level;
use crate::js::shape::Shape;
use crate::js::transform::JsTransform;

/// A small deterministic generator, seeded by proptest.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NUMBERS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.5,
    -2.5,
    3.7,
    1e21,
    1e-7,
    123456.789,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    9007199254740991.0,
    f64::MAX,
    f64::MIN_POSITIVE,
];

const TEXTS: &[&str] = &[
    "",
    "a",
    "Ada",
    " padded\t",
    "\u{feff}bom",
    "nel\u{85}",
    "ÉCOLE",
    "straße",
    "ΣΊΣΥΦΟΣ",
    "\u{1f600}",
    "\u{ff61}",
    "10",
    "2",
    "true",
    "x y",
];

fn input_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int32, false),
        Field::new("n", DataType::Float64, false),
        Field::new("s", DataType::Utf8, false),
        Field::new("b", DataType::Boolean, false),
        Field::new("big", DataType::Int64, false),
        Field::new("d", DataType::Decimal128(10, 2), false),
        Field::new("ns", DataType::Utf8, true),
    ]))
}

fn rows(g: &mut Gen, count: usize) -> Batch {
    let ints = [0, 1, -1, 30, 29, i32::MAX, i32::MIN, 7];
    let bigs = [0i64, 1, -5, 9007199254740991, -9007199254740991, 1 << 40];
    let decimals = [0i128, 1, -1, 50, 12345, -99999, 7000050];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            (0..count).map(|_| *g.pick(&ints)),
        )),
        Arc::new(Float64Array::from_iter_values(
            (0..count).map(|_| *g.pick(NUMBERS)),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..count).map(|_| *g.pick(TEXTS)),
        )),
        Arc::new(BooleanArray::from_iter(
            (0..count).map(|_| Some(g.chance(50))),
        )),
        Arc::new(Int64Array::from_iter_values(
            (0..count).map(|_| *g.pick(&bigs)),
        )),
        Arc::new(
            Decimal128Array::from_iter_values((0..count).map(|_| *g.pick(&decimals)))
                .with_precision_and_scale(10, 2)
                .unwrap(),
        ),
        Arc::new(StringArray::from_iter((0..count).map(|_| {
            let t = *g.pick(TEXTS);
            (!g.chance(30)).then_some(t)
        }))),
    ];
    let data = RecordBatch::try_new(input_schema(), columns).unwrap();
    let lines = UInt64Array::from_iter_values(2..2 + count as u64);
    Batch::new(data, Some("in.csv".into()), lines)
}

/// Random expressions of the compiled subset, as JavaScript text, by type.
struct Script<'g> {
    g: &'g mut Gen,
    locals: Vec<(String, char)>,
    /// Whether the field `S` (replacing the input column `s`) is declared.
    replace: bool,
}

impl Script<'_> {
    fn num(&mut self, depth: u32) -> String {
        let leaf = depth == 0 || self.g.chance(30);
        if leaf {
            return match self.g.below(6) {
                0 => {
                    let n = *self.g.pick(&[
                        "0", "1", "-1", "0.5", "3", "50000", "1e21", "NaN", "Infinity", "2.5",
                    ]);
                    n.to_string()
                }
                1 => "r.i".into(),
                2 => "r.n".into(),
                3 => "r.d".into(),
                4 => "r.big".into(),
                _ => self.local('n').unwrap_or_else(|| "r.i".into()),
            };
        }
        let d = depth - 1;
        match self.g.below(7) {
            0..=2 => {
                let op = *self.g.pick(&["+", "-", "*", "/", "%"]);
                format!("({} {op} {})", self.num(d), self.num(d))
            }
            3 => format!("(-({}))", self.num(d)),
            4 => {
                let f = *self
                    .g
                    .pick(&["abs", "floor", "ceil", "round", "trunc", "sqrt", "sign"]);
                format!("Math.{f}({})", self.num(d))
            }
            5 => format!(
                "Math.{}({}, {})",
                self.g.pick(&["min", "max"]),
                self.num(d),
                self.num(d)
            ),
            _ => format!("({} ? {} : {})", self.boolean(d), self.num(d), self.num(d)),
        }
    }

    fn text(&mut self, depth: u32) -> String {
        let leaf = depth == 0 || self.g.chance(30);
        if leaf {
            return match self.g.below(4) {
                0 => format!("{:?}", self.g.pick(TEXTS)),
                1 | 2 => "r.s".into(),
                _ => self.local('s').unwrap_or_else(|| "r.s".into()),
            };
        }
        let d = depth - 1;
        match self.g.below(6) {
            0 => format!("({} + {})", self.text(d), self.text(d)),
            1 => format!("({} + ' ' + {})", self.text(d), self.num(d)),
            2 => format!("({} + '/' + {})", self.boolean(d), self.text(d)),
            3 => {
                let m =
                    *self
                        .g
                        .pick(&["toUpperCase", "toLowerCase", "trim", "trimStart", "trimEnd"]);
                format!("{}.{m}()", self.text(d))
            }
            4 => format!("`<${{{}}}|${{{}}}>`", self.text(d), self.num(d)),
            5 if self.g.chance(30) => {
                let cuts = ["slice", "substring"];
                let how = *self.g.pick(&cuts);
                let at = ["0", "1", "-1", "2", "-3", "10", "0.5", "NaN", "-Infinity"];
                if self.g.chance(50) {
                    format!("{}.{how}({})", self.text(d), self.g.pick(&at))
                } else {
                    let (a, b) = (*self.g.pick(&at), *self.g.pick(&at));
                    format!("{}.{how}({a}, {b})", self.text(d))
                }
            }
            5 if self.g.chance(30) => {
                let f = *self.g.pick(&["F2", "N0", "n3", "0.00", "#,##0.0", "0", ""]);
                format!("c.utils.format({}, '{f}')", self.num(d))
            }
            _ => format!(
                "({} ? {} : {})",
                self.boolean(d),
                self.text(d),
                self.text(d)
            ),
        }
    }

    fn boolean(&mut self, depth: u32) -> String {
        let leaf = depth == 0 || self.g.chance(25);
        if leaf {
            return match self.g.below(5) {
                0 => self.g.pick(&["true", "false"]).to_string(),
                1 => "r.b".into(),
                2 => format!("(r.ns {} null)", self.g.pick(&["==", "!=", "===", "!=="])),
                3 => self.local('b').unwrap_or_else(|| "r.b".into()),
                _ => "(null == r.ns)".into(),
            };
        }
        let d = depth - 1;
        match self.g.below(8) {
            0 | 1 => {
                let op = *self
                    .g
                    .pick(&["<", "<=", ">", ">=", "==", "!=", "===", "!=="]);
                format!("({} {op} {})", self.num(d), self.num(d))
            }
            2 => {
                let op = *self.g.pick(&["<", "<=", ">", ">=", "==", "!==", "==="]);
                format!("({} {op} {})", self.text(d), self.text(d))
            }
            3 => format!("(!{})", self.boolean(d)),
            4 => format!("({} && {})", self.boolean(d), self.boolean(d)),
            5 => format!("({} || {})", self.boolean(d), self.boolean(d)),
            6 => {
                let m = *self.g.pick(&["includes", "startsWith", "endsWith"]);
                format!("{}.{m}({})", self.text(d), self.text(d))
            }
            _ => format!(
                "(!!{})",
                if self.g.chance(50) {
                    self.num(d)
                } else {
                    self.text(d)
                }
            ),
        }
    }

    fn local(&mut self, ty: char) -> Option<String> {
        let names: Vec<&String> = self
            .locals
            .iter()
            .filter(|(_, t)| *t == ty)
            .map(|(n, _)| n)
            .collect();
        (!names.is_empty()).then(|| names[self.g.below(names.len())].clone())
    }

    fn any(&mut self, depth: u32) -> String {
        match self.g.below(3) {
            0 => self.num(depth),
            1 => self.text(depth),
            _ => self.boolean(depth),
        }
    }

    fn set(&mut self) -> String {
        let fields: &[&str] = if self.replace {
            &["out_s", "out_n", "out_i", "out_b", "req", "S"]
        } else {
            &["out_s", "out_n", "out_i", "out_b", "req"]
        };
        let field = *self.g.pick(fields);
        let value = if self.g.chance(5) {
            "null".to_string()
        } else {
            self.any(2)
        };
        format!("c.output.setField('{field}', {value});")
    }

    fn validate(&mut self) -> String {
        match self.g.below(3) {
            0 => format!("c.validate.check({});", self.boolean(2)),
            1 => format!("c.validate.check({}, {});", self.boolean(2), self.any(1)),
            _ => {
                let names = ["ns", "s", "nope", "i"];
                let a = *self.g.pick(&names);
                let b = *self.g.pick(&names);
                format!("c.validate.required(['{a}', '{b}']);")
            }
        }
    }

    fn send(&mut self) -> String {
        let how = *self.g.pick(&["send", "sendCopy"]);
        let port = *self.g.pick(&["a", "b"]);
        format!("c.route.{how}('{port}');")
    }

    fn statements(&mut self, depth: u32, must_return: bool) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..self.g.below(4) {
            out.push(match self.g.below(6) {
                0 if depth > 0 => {
                    let inner = self.statements(depth - 1, false).join(" ");
                    let other = self.statements(depth - 1, false).join(" ");
                    format!("if ({}) {{ {inner} }} else {{ {other} }}", self.boolean(2))
                }
                1 => format!("if ({}) return {};", self.boolean(2), self.boolean(1)),
                2 => self.send(),
                4 if self.g.chance(40) => self.validate(),
                3 if depth == 2 => {
                    let name = format!("v{}", self.locals.len());
                    let ty = *self.g.pick(&['n', 's', 'b']);
                    let value = match ty {
                        'n' => self.num(2),
                        's' => self.text(2),
                        _ => self.boolean(2),
                    };
                    self.locals.push((name.clone(), ty));
                    format!("var {name} = {value};")
                }
                _ => self.set(),
            });
        }
        if must_return {
            out.push(format!("return {};", self.boolean(2)));
        }
        out
    }
}

fn script(g: &mut Gen, replace: bool) -> String {
    let mut s = Script {
        g,
        locals: Vec::new(),
        replace,
    };
    // Usually set the required field first, so that most rows are not rejected for it.
    let first = if s.g.chance(70) {
        format!("c.output.setField('req', {});\n  ", s.text(3))
    } else {
        String::new()
    };
    let body = s.statements(2, true).join("\n  ");
    format!("function process(c) {{\n  var r = c.input.current();\n  {first}{body}\n}}")
}

fn config(script: &str, compile: bool, replace: bool) -> JsConfig {
    let field = |name: &str, ty: ColumnType, required: bool| FieldSpec {
        name: name.into(),
        ty,
        required,
    };
    JsConfig {
        node: "js".into(),
        script: script.into(),
        script_name: "js.Script".into(),
        fields: [
            field("out_s", ColumnType::Utf8, false),
            field("out_n", ColumnType::Float64, false),
            field("out_i", ColumnType::Int32, false),
            field("out_b", ColumnType::Bool, false),
            field("req", ColumnType::Utf8, true),
        ]
        .into_iter()
        // Replaces the input column `s` with another type: rows that leave it unset are rejected.
        .chain(replace.then(|| field("S", ColumnType::Int64, false)))
        .collect(),
        inherit: true,
        ports: vec!["a".into(), "b".into()],
        parallel: true,
        limits: Limits::default(),
        log_level: Level::Info,
        compile,
    }
}

/// Everything a run gives, as text: each output's rows, and the rejects.
fn outcome(t: &JsTransform, batch: Batch) -> Result<String, String> {
    let mut rejects: Vec<RowError> = Vec::new();
    let routed = t
        .apply_routed(batch, &mut rejects)
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    for (name, b) in
        std::iter::once(("main", &routed.main)).chain(["a", "b"].into_iter().zip(&routed.ports))
    {
        text.push_str(&format!("{name}:\n"));
        let options = FormatOptions::default().with_null("<null>");
        let formatters: Vec<_> = b
            .data
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..b.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            text.push_str(&format!("  {:?} {}\n", b.origin.line(row), cells.join("|")));
        }
    }
    text.push_str(&format!("emitted {}\n", routed.emitted));
    for r in rejects {
        text.push_str(&format!(
            "reject line {:?} {:?} {:?} {} {:?} {:?}\n",
            r.line,
            r.kind,
            r.column.as_ref().map(|c| &c.name),
            r.message,
            r.value,
            r.hint
        ));
    }
    Ok(text)
}

fn check(seed: u64) {
    let mut g = Gen(seed | 1);
    let replace = g.chance(30);
    let script = script(&mut g, replace);
    let count = 1 + g.below(40);
    let batch = rows(&mut g, count);
    let input = input_schema();
    let compiled_config = config(&script, true, replace);
    let output = compiled_config.schema_for(&input).unwrap();
    let shape = Shape::new(&compiled_config, input.clone(), output.clone());
    if let Err(why) = super::compile(&script, &shape) {
        panic!("the generator made a script the compiler refuses ({why}):\n{script}");
    }
    let compiled = JsTransform::new(compiled_config, input.clone(), output.clone());
    let boa = JsTransform::new(config(&script, false, replace), input, output);
    let (a, b) = (outcome(&compiled, batch.clone()), outcome(&boa, batch));
    if b.as_ref()
        .is_ok_and(|b| b.contains("the JavaScript engine (boa) failed"))
    {
        // boa's own bug (e.g. `-2147483648 % -1` panics in it); the compiled path is right.
        return;
    }
    if a != b && a.as_ref().map(|t| zero_signs(t)) == b.as_ref().map(|t| zero_signs(t)) {
        // boa's integer fast path divides 0 by a negative number to +0 where JavaScript (and the
        // compiled path) gives -0, so `1 / (0 / -2)` is Infinity on boa, -Infinity compiled.
        return;
    }
    assert_eq!(a, b, "compiled and boa differ on\n{script}");
}

/// `text` with the signs of zeros and infinities dropped, cell by cell.
fn zero_signs(text: &str) -> String {
    text.split_inclusive(['|', '\n', ' '])
        .map(|cell| {
            let (value, end) = cell.split_at(cell.trim_end_matches(['|', '\n', ' ']).len());
            let unsigned = value.strip_prefix('-').filter(|v| {
                *v == "inf"
                    || (v.starts_with('0') && v.chars().all(|c| matches!(c, '0' | '.' | ',')))
            });
            format!("{}{end}", unsigned.unwrap_or(value))
        })
        .collect()
}

#[test]
fn boa_divides_zero_to_positive_zero() {
    assert_eq!(zero_signs("1|-0.0|-inf\n-0.00 -1"), "1|0.0|inf\n0.00 -1");
    // The seed that found it: `(50000 % -1) / (-1 + -1)` formatted, -0.0 compiled, 0.0 on boa.
    check(2461574791064891990);
}

/// 1000 cases from a fixed seed, so CI runs the same scripts every time; set `PROPTEST_RNG_SEED`
/// (e.g. to `$RANDOM`) to explore others.
fn cases() -> ProptestConfig {
    let mut config = ProptestConfig {
        cases: 1000,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(0x5eed_f10e);
    }
    config
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn compiled_scripts_give_what_boa_gives(seed in any::<u64>()) {
        check(seed);
    }
}

#[test]
fn j2_compiles_and_a_loop_does_not() {
    let input = input_schema();
    let cfg = config("", true, false);
    let output = cfg.schema_for(&input).unwrap();
    let shape = Shape::new(&cfg, input, output);
    let j2 = "function process(context) {\n  var r = context.input.current();\n  if (!(r.b && r.i >= 30)) return false;\n  context.output.setField('out_s', r.s + ' ' + r.s);\n  context.output.setField('req', r.n >= 50000 ? 'high' : 'low');\n  return true;\n}";
    assert!(super::compile(j2, &shape).is_ok());
    let looped = "function process(c) {\n  var t = 0;\n  for (var k = 0; k < 3; k++) { t = t + k; }\n  return true;\n}";
    let why = super::compile(looped, &shape).unwrap_err();
    assert_eq!(
        (why.what.as_str(), why.line, why.column),
        ("a `for` loop", 3, 19)
    );
}
