//! Stage 1 of the expression language, at load: text → sqlparser AST.
//!
//! Parsing needs no schema and happens while the config is read, so a syntax error is reported at
//! the YAML key that holds the expression. [`ExprError`] and [`Pos`], the error and the position in
//! the text every later stage reports with, are defined here.
//!
//! The language is documented in full in `docs/expressions.md`; every construct sqlparser accepts
//! that is not listed there is refused by [`super::check`] with its position, never ignored.

use sqlparser::ast as sql;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// A position inside an expression's text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: u64,
    /// 1-based column, in characters.
    pub column: u64,
}

impl Pos {
    pub(super) fn of(span: sqlparser::tokenizer::Span) -> Option<Pos> {
        (span.start.line > 0).then_some(Pos {
            line: span.start.line,
            column: span.start.column,
        })
    }
}

/// Why an expression cannot be used, and where in its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// What is wrong.
    pub message: String,
    /// Where, when sqlparser knows.
    pub pos: Option<Pos>,
}

impl ExprError {
    pub(super) fn new(message: impl Into<String>, pos: Option<Pos>) -> Self {
        Self {
            message: message.into(),
            pos,
        }
    }

    /// The message, the expression and a caret under the position, for config errors.
    pub fn render(&self, text: &str) -> String {
        let Some(pos) = self.pos else {
            return format!("{}\n    {}", self.message, text.trim_end());
        };
        let line = text
            .lines()
            .nth(pos.line.saturating_sub(1) as usize)
            .unwrap_or(text);
        let pad = " ".repeat(pos.column.saturating_sub(1) as usize);
        let at = if text.lines().count() > 1 {
            format!("line {}, column {}", pos.line, pos.column)
        } else {
            format!("column {}", pos.column)
        };
        format!("{} (at {at})\n    {line}\n    {pad}^", self.message)
    }
}

/// Parse one expression. The whole text must be one expression: trailing tokens are an error.
pub fn parse(text: &str) -> Result<sql::Expr, ExprError> {
    let dialect = GenericDialect {};
    let syntax = |e: sqlparser::parser::ParserError| {
        let message = e.to_string();
        let message = message
            .strip_prefix("sql parser error: ")
            .unwrap_or(&message)
            .to_string();
        ExprError::new(message, None)
    };
    let mut parser = Parser::new(&dialect).try_with_sql(text).map_err(syntax)?;
    let expr = parser.parse_expr().map_err(syntax)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ExprError::new(
            format!(
                "unexpected `{}` after the end of the expression",
                next.token
            ),
            Pos::of(next.span),
        ));
    }
    Ok(expr)
}
