//! A source's `Encoding` and `InvalidBytes`: text in another encoding than UTF-8 is decoded to
//! UTF-8 as it is read (encoding_rs, every WHATWG encoding: windows-1252, ISO-8859-x, UTF-16 LE/BE
//! with its byte-order mark, Shift_JIS, GBK, ...), so everything after the bytes sees UTF-8.
//!
//! UTF-8 input is not touched (its throughput stays): bytes that are not UTF-8 are rejects naming
//! them, as they always were, unless `InvalidBytes: replace` asks for U+FFFD instead. Decoding
//! another encoding always replaces what it cannot decode; asking it to reject is refused.

use std::io::Read;

use encoding_rs::Encoding;
use flowengine_engine::load::config::{ConfigCx, MapReader};

/// How a source's bytes become UTF-8.
#[derive(Debug, Clone, Copy)]
pub struct SourceEncoding {
    /// `None`: UTF-8, read as it is.
    decode: Option<&'static Encoding>,
}

impl SourceEncoding {
    /// UTF-8, read as it is.
    pub const UTF8: SourceEncoding = SourceEncoding { decode: None };

    /// `reader` as UTF-8.
    pub fn wrap(self, reader: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        match self.decode {
            None => reader,
            Some(encoding) => Box::new(
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding))
                    // A UTF-16 byte-order mark says which UTF-16 it is.
                    .bom_override(true)
                    .build(reader),
            ),
        }
    }

    /// What `--verbose` says, when the input is decoded.
    pub fn note(self) -> Option<String> {
        self.decode.map(|e| match e == encoding_rs::UTF_8 {
            true => "bytes that are not UTF-8 become U+FFFD (`InvalidBytes: replace`)".to_string(),
            false => format!(
                "the input is decoded from {} to UTF-8 as it is read (undecodable bytes become U+FFFD)",
                e.name()
            ),
        })
    }
}

/// Read a source's `Encoding` (default UTF-8; any WHATWG label) and `InvalidBytes` (`reject`,
/// the default for UTF-8, or `replace`).
pub fn read_source(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<SourceEncoding> {
    let written = m.string(cx, "Encoding");
    let replace = m.choice(cx, "InvalidBytes", &[("reject", false), ("replace", true)]);
    let encoding = match &written {
        None => encoding_rs::UTF_8,
        Some(label) => match Encoding::for_label(label.trim().as_bytes()) {
            Some(e) => e,
            None => {
                m.invalid(
                    cx,
                    "Encoding",
                    "an encoding name such as UTF-8, windows-1252, ISO-8859-15, UTF-16LE, UTF-16BE or Shift_JIS (the WHATWG encodings)",
                    &format!("{label:?}"),
                );
                return None;
            }
        },
    };
    if encoding == encoding_rs::UTF_8 {
        return Some(match replace {
            Some(true) => SourceEncoding {
                decode: Some(encoding_rs::UTF_8),
            },
            _ => SourceEncoding::UTF8,
        });
    }
    if replace == Some(false) {
        m.invalid(
            cx,
            "InvalidBytes",
            "`replace` (only UTF-8 input can reject bytes it cannot read; other encodings are decoded with U+FFFD)",
            "reject",
        );
        return None;
    }
    Some(SourceEncoding {
        decode: Some(encoding),
    })
}

/// A sink's `Encoding`: sinks write UTF-8 only; say so instead of writing another encoding.
pub fn check_sink(m: &mut MapReader<'_>, cx: &mut ConfigCx) {
    if let Some(enc) = m.string(cx, "Encoding") {
        let is_utf8 = Encoding::for_label(enc.trim().as_bytes()) == Some(encoding_rs::UTF_8);
        if !is_utf8 {
            m.invalid(
                cx,
                "Encoding",
                "UTF-8 (sinks write UTF-8 only; convert the output with iconv)",
                &format!("{enc:?}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(encoding: &'static Encoding, bytes: &[u8]) -> String {
        let source = SourceEncoding {
            decode: Some(encoding),
        };
        let mut text = String::new();
        source
            .wrap(Box::new(std::io::Cursor::new(bytes.to_vec())))
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn other_encodings_read_as_utf8() {
        assert_eq!(
            decoded(encoding_rs::WINDOWS_1252, b"caf\xe9,\x80\n"),
            "café,€\n"
        );
        // A UTF-16 byte-order mark wins over the label, and is not part of the text.
        assert_eq!(
            decoded(encoding_rs::UTF_16LE, b"\xfe\xff\x00a\x00,\x00b"),
            "a,b"
        );
        assert_eq!(decoded(encoding_rs::UTF_16LE, b"a\x00,\x00b\x00"), "a,b");
        assert_eq!(decoded(encoding_rs::SHIFT_JIS, b"\x93\xfa\x96\x7b"), "日本");
        assert_eq!(decoded(encoding_rs::UTF_8, b"ok \xff"), "ok \u{fffd}");
    }
}
