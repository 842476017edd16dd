//! A YAML tree that remembers where every node was written.
//!
//! serde_yaml (deprecated upstream) loses positions, cannot match keys case-insensitively and stops at
//! the first error; the pipeline loader needs all three. So the file is parsed once with yaml-rust2's
//! event parser into this small tree, and [`crate::load::config`] walks it. Every YAML call lives here.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// Any scalar, as written (YAML 1.2 core types are interpreted by the reader that asks).
    Scalar(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order. Keys are scalars.
    Map(Vec<(Node, Node)>),
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub mark: Mark,
}

impl Node {
    /// A short description of the value's shape, for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// Where.
    pub mark: Mark,
}

/// Parse one YAML document. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        message: e.info().to_string(),
        mark: to_mark(e.marker()),
    })?;
    if let Some(message) = builder.error {
        return Err(SyntaxError {
            message,
            mark: Mark::default(),
        });
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        mark: Mark { line: 1, column: 1 },
    }))
}

fn to_mark(m: &Marker) -> Mark {
    Mark {
        line: m.line(),
        column: m.col() + 1,
    }
}

/// Open collections while events stream in.
enum Frame {
    Seq(Vec<Node>, Mark, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Mark, usize),
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: Vec<(usize, Node)>,
    error: Option<String>,
}

impl TreeBuilder {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, pending_key, ..)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let mark = to_mark(&marker);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let is_null = style == TScalarStyle::Plain
                    && matches!(text.as_str(), "~" | "null" | "Null" | "NULL" | "");
                let value = if is_null {
                    Value::Null
                } else {
                    Value::Scalar(text)
                };
                self.finish(Node { value, mark }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq(Vec::new(), mark, anchor))
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(Vec::new(), None, mark, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, mark, anchor)) => (
                        Node {
                            value: Value::Seq(items),
                            mark,
                        },
                        anchor,
                    ),
                    Some(Frame::Map(entries, _, mark, anchor)) => (
                        Node {
                            value: Value::Map(entries),
                            mark,
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.finish(node, anchor);
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, node)) => {
                    let node = node.clone();
                    self.finish(node, 0);
                }
                None => self.error = Some(format!("unknown alias at line {}", mark.line)),
            },
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_keys(node: &Node) -> Vec<(String, Mark)> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, _)| (k.as_scalar().unwrap().to_string(), k.mark))
                .collect(),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn keys_keep_their_positions() {
        let root = parse("a: 1\nb:\n  c: x\n").unwrap();
        let keys = map_keys(&root);
        assert_eq!(keys[0], ("a".into(), Mark { line: 1, column: 1 }));
        assert_eq!(keys[1].1, Mark { line: 2, column: 1 });
        let Value::Map(entries) = &root.value else {
            unreachable!()
        };
        let inner = map_keys(&entries[1].1);
        assert_eq!(inner[0], ("c".into(), Mark { line: 3, column: 3 }));
    }

    #[test]
    fn nulls_and_quoted_scalars() {
        let root = parse("a:\nb: ~\nc: \"\"\nd: 'null'\n").unwrap();
        let Value::Map(entries) = root.value else {
            unreachable!()
        };
        assert_eq!(entries[0].1.value, Value::Null);
        assert_eq!(entries[1].1.value, Value::Null);
        assert_eq!(entries[2].1.value, Value::Scalar(String::new()));
        assert_eq!(entries[3].1.value, Value::Scalar("null".into()));
    }

    #[test]
    fn aliases_resolve_to_copies() {
        let root = parse("a: &x {k: v}\nb: *x\n").unwrap();
        let Value::Map(entries) = root.value else {
            unreachable!()
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.mark.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").unwrap().value, Value::Null);
    }
}
