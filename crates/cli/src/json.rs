//! A minimal JSON writer for `--json` output.
//!
//! Objects keep their keys in insertion order, so the output is stable for scripts and diffs.
//! Byte strings from an image (paths, argv) need not be UTF-8: they are converted lossily
//! before escaping, which keeps the document valid.

use std::fmt::Write;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(&'static str, Value)>),
}

impl Value {
    pub fn bytes(b: &[u8]) -> Value {
        Value::Str(String::from_utf8_lossy(b).into_owned())
    }

    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn int(n: impl Into<i128>) -> Value {
        Value::Int(n.into())
    }

    pub fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        v.map_or(Value::Null, f)
    }

    /// Renders with two-space indentation and a trailing newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Str(s) => escape_into(out, s),
            Value::Array(items) if items.is_empty() => out.push_str("[]"),
            Value::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    separator(out, i, depth + 1);
                    item.write(out, depth + 1);
                }
                newline(out, depth);
                out.push(']');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    separator(out, i, depth + 1);
                    escape_into(out, key);
                    out.push_str(": ");
                    value.write(out, depth + 1);
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }
}

fn separator(out: &mut String, index: usize, depth: usize) {
    if index > 0 {
        out.push(',');
    }
    newline(out, depth);
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Writes `s` as a JSON string literal (RFC 8259: quote, backslash and control characters
/// are escaped; everything else is kept as UTF-8).
pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, s);
        out
    }

    #[test]
    fn escapes_specials_and_controls() {
        assert_eq!(escaped("plain"), r#""plain""#);
        assert_eq!(escaped("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(escaped("l1\nl2\t\r"), r#""l1\nl2\t\r""#);
        assert_eq!(escaped("\u{1}\u{1f}\u{7f}"), r#""\u0001\u001f\u007f""#);
        assert_eq!(escaped("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(escaped("朱雀 é"), "\"朱雀 é\"");
    }

    #[test]
    fn non_utf8_bytes_become_replacement_characters() {
        assert_eq!(Value::bytes(b"a\xffb").render(), "\"a\u{fffd}b\"\n");
    }

    #[test]
    fn renders_nested_values_in_key_order() {
        let v = Value::Object(vec![
            ("z", Value::int(1)),
            ("a", Value::Array(vec![Value::str("x"), Value::Null])),
            ("e", Value::Array(vec![])),
            ("o", Value::Object(vec![("t", Value::Bool(true))])),
        ]);
        assert_eq!(
            v.render(),
            "{\n  \"z\": 1,\n  \"a\": [\n    \"x\",\n    null\n  ],\n  \"e\": [],\n  \"o\": {\n    \"t\": true\n  }\n}\n"
        );
    }
}
