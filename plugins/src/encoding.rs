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

    /// Whether the bytes reach the decoder as they are in the file (so offsets in one are offsets
    /// in the other).
    pub fn reads_as_is(self) -> bool {
        self.decode.is_none()
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
    let encoding = match written {
        None => encoding_rs::UTF_8,
        Some(label) => known(m, cx, &label)?,
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

/// The encoding a WHATWG `label` names; an unknown label is a configuration error at `Encoding`.
fn known(m: &mut MapReader<'_>, cx: &mut ConfigCx, label: &str) -> Option<&'static Encoding> {
    let encoding = Encoding::for_label(label.trim().as_bytes());
    if encoding.is_none() {
        m.invalid(
            cx,
            "Encoding",
            "an encoding name such as UTF-8, windows-1252, ISO-8859-15, UTF-16LE, UTF-16BE or Shift_JIS (the WHATWG encodings)",
            &format!("{label:?}"),
        );
    }
    encoding
}

/// A sink's `Encoding` where only UTF-8 can be written (JSON, RFC 8259): say so instead of
/// writing another encoding.
pub fn check_sink(m: &mut MapReader<'_>, cx: &mut ConfigCx, why: &str) {
    if let Some(enc) = m.string(cx, "Encoding") {
        let is_utf8 = Encoding::for_label(enc.trim().as_bytes()) == Some(encoding_rs::UTF_8);
        if !is_utf8 {
            m.invalid(
                cx,
                "Encoding",
                &format!("UTF-8 ({why})"),
                &format!("{enc:?}"),
            );
        }
    }
}

/// How a text sink's UTF-8 becomes the bytes it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkEncoding {
    /// UTF-8, as encoded.
    Utf8,
    /// UTF-16, little- or big-endian, the file starting with its byte-order mark.
    Utf16 {
        /// Big-endian.
        big: bool,
    },
    /// Another WHATWG encoding (windows-1252, Shift_JIS, ...): a character it has no code for is
    /// an error, never a `?` or a `&#...;` in the data.
    Other(&'static Encoding),
}

/// Read a delimited sink's `Encoding` (default UTF-8).
pub fn read_sink(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<SinkEncoding> {
    let Some(label) = m.string(cx, "Encoding") else {
        return Some(SinkEncoding::Utf8);
    };
    let encoding = known(m, cx, &label)?;
    Some(if encoding == encoding_rs::UTF_8 {
        SinkEncoding::Utf8
    } else if encoding == encoding_rs::UTF_16LE {
        SinkEncoding::Utf16 { big: false }
    } else if encoding == encoding_rs::UTF_16BE {
        SinkEncoding::Utf16 { big: true }
    } else {
        SinkEncoding::Other(encoding)
    })
}

impl SinkEncoding {
    /// What a file in this encoding starts with (UTF-16's byte-order mark).
    pub fn start(self) -> &'static [u8] {
        match self {
            SinkEncoding::Utf16 { big: false } => b"\xFF\xFE",
            SinkEncoding::Utf16 { big: true } => b"\xFE\xFF",
            _ => b"",
        }
    }

    /// `text` (UTF-8) in this encoding, appended to `out`.
    pub fn encode(self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
        match self {
            SinkEncoding::Utf8 => out.extend_from_slice(text.as_bytes()),
            SinkEncoding::Utf16 { big } => {
                for unit in text.encode_utf16() {
                    out.extend_from_slice(&if big {
                        unit.to_be_bytes()
                    } else {
                        unit.to_le_bytes()
                    });
                }
            }
            SinkEncoding::Other(encoding) => {
                let mut encoder = encoding.new_encoder();
                let mut rest = text;
                out.reserve(text.len());
                loop {
                    let start = out.len();
                    let room = rest.len() * 2 + 16;
                    out.resize(start + room, 0);
                    let (result, read, written) =
                        encoder.encode_from_utf8_without_replacement(rest, &mut out[start..], true);
                    out.truncate(start + written);
                    match result {
                        encoding_rs::EncoderResult::InputEmpty => return Ok(()),
                        encoding_rs::EncoderResult::OutputFull => rest = &rest[read..],
                        encoding_rs::EncoderResult::Unmappable(c) => {
                            let at = text.len() - rest.len() + read;
                            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                            return Err(format!(
                                "{c:?} (U+{:04X}) has no code in {}, in the row {:?}; write UTF-8, or change the value",
                                c as u32,
                                encoding.name(),
                                &text[line_start..line_end]
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A sink's encoding, then the text in `encoding`.
pub struct Encoded {
    /// The sink's own encoding (UTF-8 text).
    pub inner: std::sync::Arc<dyn flowengine_engine::component::Encode>,
    /// The output encoding; never UTF-8 (then the inner encoder is used alone).
    pub encoding: SinkEncoding,
    /// The node, for messages.
    pub node: String,
}

impl flowengine_engine::component::Encode for Encoded {
    fn encode(
        &self,
        batch: &arrow_array::RecordBatch,
        out: &mut Vec<u8>,
    ) -> Result<(), flowengine_engine::error::RunError> {
        let mut text = Vec::new();
        self.inner.encode(batch, &mut text)?;
        self.encoding.encode(&text, out).map_err(|message| {
            flowengine_engine::error::RunError::Node {
                node: self.node.clone(),
                message,
            }
        })
    }
}

/// `encoder`, writing `encoding`.
pub fn encoder(
    encoder: std::sync::Arc<dyn flowengine_engine::component::Encode>,
    encoding: SinkEncoding,
    node: &str,
) -> std::sync::Arc<dyn flowengine_engine::component::Encode> {
    match encoding {
        SinkEncoding::Utf8 => encoder,
        encoding => std::sync::Arc::new(Encoded {
            inner: encoder,
            encoding,
            node: node.to_string(),
        }),
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

    #[test]
    fn sinks_write_other_encodings_or_say_what_they_cannot() {
        let mut out = Vec::new();
        SinkEncoding::Other(encoding_rs::WINDOWS_1252)
            .encode("café,€\n".as_bytes(), &mut out)
            .unwrap();
        assert_eq!(out, b"caf\xe9,\x80\n");
        let mut out = Vec::new();
        SinkEncoding::Utf16 { big: true }
            .encode(b"a,b", &mut out)
            .unwrap();
        assert_eq!(out, b"\x00a\x00,\x00b");
        let e = SinkEncoding::Other(encoding_rs::WINDOWS_1252)
            .encode("1,ok\n2,日本\n".as_bytes(), &mut Vec::new())
            .unwrap_err();
        assert!(e.contains("U+65E5") && e.contains("\"2,日本\""), "{e}");
    }
}
