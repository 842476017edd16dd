//! The input columns a script can read from its row object, for the boa path to convert only
//! those per row: every property name it writes literally (`r.age`, `r['first name']`), unless
//! it could reach properties by computed names (`r[k]`, `for … in`, `in`, `Object`, `JSON`,
//! `Reflect`, `hasOwnProperty`, spreads, `with`), in which case it may read any. Names in string
//! literals count as read.

use std::collections::HashSet;
use std::ops::ControlFlow;

use boa_engine::ast::expression::access::PropertyAccessField;
use boa_engine::ast::expression::literal::PropertyDefinition;
use boa_engine::ast::expression::literal::{Literal, LiteralKind};
use boa_engine::ast::expression::operator::binary::{BinaryOp, RelationalOp};
use boa_engine::ast::expression::operator::Binary;
use boa_engine::ast::expression::{Expression, Identifier, Spread};
use boa_engine::ast::scope::Scope;
use boa_engine::ast::statement::iteration::ForInLoop;
use boa_engine::ast::statement::Statement;
use boa_engine::ast::visitor::{VisitWith, Visitor};
use boa_engine::interner::Interner;
use boa_engine::parser::{Parser, Source};

/// The property names `script` reads by name; `None` when it may read any (or does not parse).
pub fn row_names(script: &str) -> Option<HashSet<String>> {
    let mut interner = Interner::default();
    let parsed = Parser::new(Source::from_bytes(script))
        .parse_script(&Scope::new_global(), &mut interner)
        .ok()?;
    let mut names = Names {
        interner: &interner,
        names: HashSet::new(),
        dynamic: false,
    };
    let _ = parsed.visit_with(&mut names);
    let reflective = [
        "hasOwnProperty",
        "propertyIsEnumerable",
        "getOwnPropertyNames",
    ];
    let dynamic = names.dynamic || reflective.iter().any(|n| names.names.contains(*n));
    (!dynamic).then_some(names.names)
}

struct Names<'i> {
    interner: &'i Interner,
    names: HashSet<String>,
    dynamic: bool,
}

impl<'ast> Visitor<'ast> for Names<'_> {
    type BreakTy = ();

    fn visit_property_access_field(
        &mut self,
        field: &'ast PropertyAccessField,
    ) -> ControlFlow<Self::BreakTy> {
        match field {
            PropertyAccessField::Const(id) => {
                self.names
                    .insert(self.interner.resolve_expect(id.sym()).to_string());
            }
            PropertyAccessField::Expr(e) => match e.flatten() {
                Expression::Literal(l) => match l.kind() {
                    LiteralKind::String(s) => {
                        let name =
                            String::from_utf16_lossy(self.interner.resolve_expect(*s).utf16());
                        self.names.insert(name);
                    }
                    _ => self.dynamic = true,
                },
                _ => self.dynamic = true,
            },
        }
        field.visit_with(self)
    }

    fn visit_identifier(&mut self, id: &'ast Identifier) -> ControlFlow<Self::BreakTy> {
        let name = self.interner.resolve_expect(id.sym()).to_string();
        if matches!(
            name.as_str(),
            "Object" | "JSON" | "Reflect" | "eval" | "Function" | "globalThis"
        ) {
            self.dynamic = true;
        }
        ControlFlow::Continue(())
    }

    fn visit_literal(&mut self, node: &'ast Literal) -> ControlFlow<Self::BreakTy> {
        // A name in a string is kept too: `r.hasOwnProperty('notes')` must see it.
        if let LiteralKind::String(s) = node.kind() {
            let text = String::from_utf16_lossy(self.interner.resolve_expect(*s).utf16());
            self.names.insert(text);
        }
        ControlFlow::Continue(())
    }

    fn visit_binary(&mut self, node: &'ast Binary) -> ControlFlow<Self::BreakTy> {
        if node.op() == BinaryOp::Relational(RelationalOp::In) {
            self.dynamic = true;
        }
        node.visit_with(self)
    }

    fn visit_for_in_loop(&mut self, node: &'ast ForInLoop) -> ControlFlow<Self::BreakTy> {
        self.dynamic = true;
        node.visit_with(self)
    }

    fn visit_spread(&mut self, node: &'ast Spread) -> ControlFlow<Self::BreakTy> {
        self.dynamic = true;
        node.visit_with(self)
    }

    fn visit_property_definition(
        &mut self,
        node: &'ast PropertyDefinition,
    ) -> ControlFlow<Self::BreakTy> {
        if matches!(node, PropertyDefinition::SpreadObject(_)) {
            self.dynamic = true;
        }
        node.visit_with(self)
    }

    fn visit_statement(&mut self, node: &'ast Statement) -> ControlFlow<Self::BreakTy> {
        if matches!(node, Statement::With(_)) {
            self.dynamic = true;
        }
        node.visit_with(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_names_are_found_and_computed_ones_read_everything() {
        let names = row_names("function process(c) { var r = c.input.current(); return r.age > 3 && r['first name'] != ''; }").unwrap();
        for n in ["input", "current", "age", "first name"] {
            assert!(names.contains(n), "{n}");
        }
        assert!(!names.contains("last_name"));
        for dynamic in [
            "function process(c) { var r = c.input.current(); var k = 'age'; return r[k] > 3; }",
            "function process(c) { return JSON.stringify(c.input.current()) != ''; }",
            "function process(c) { for (var k in c.input.current()) {} return true; }",
            "function process(c) { return Object.keys(c.input.current()).length > 0; }",
            "function process(c) { var o = {...c.input.current()}; return true; }",
            "function process(c) { var k = 'a' + 'ge'; return k in c.input.current(); }",
            "function process(c) { var k = 'x'; return c.input.current().hasOwnProperty(k); }",
        ] {
            assert_eq!(row_names(dynamic), None, "{dynamic}");
        }
    }
}
