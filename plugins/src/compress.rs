//! Compressed files and the standard streams, for every text source and sink.
//!
//! A source's bytes come from [`open_input`]: the file (or standard input for `-`), decompressed on
//! a thread of its own when it is gzip or zstd (found by its first bytes, or as `Compression`
//! says), handed over in blocks through a bounded channel, so the reader sees plain bytes and
//! memory stays bounded. A corrupt or truncated stream is an error naming the file and the byte
//! offset in the compressed file where decompression stopped.
//!
//! A sink compresses in its encoder ([`Compressed`]): each batch becomes one complete gzip member
//! or zstd frame, made on the worker pool like the encoding itself, and the file is their
//! concatenation, which every gzip and zstd reader reads as one stream (as `pigz` writes).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use arrow_array::RecordBatch;
use flowengine_engine::component::Encode;
use flowengine_engine::error::RunError;
use flowengine_engine::load::config::{ConfigCx, MapReader};

/// A compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (RFC 1952); a file may hold several members.
    Gzip,
    /// Zstandard; a file may hold several frames.
    Zstd,
}

impl Compression {
    /// The format a file's first bytes say it is in.
    fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The format a file name's extension says (`.gz`, `.zst`).
    fn by_extension(path: &Path) -> Compression {
        match path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
        {
            Some(e) if e == "gz" || e == "gzip" => Compression::Gzip,
            Some(e) if e == "zst" || e == "zstd" => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// `gzip`, `zstd`, or `plain`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

const CHOICES: [(&str, Option<Compression>); 4] = [
    ("auto", None),
    ("none", Some(Compression::None)),
    ("gzip", Some(Compression::Gzip)),
    ("zstd", Some(Compression::Zstd)),
];

/// A source's `Compression`: `auto` (the default: by the file's first bytes) or a format.
pub fn read_source(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Compression> {
    m.choice(cx, "Compression", &CHOICES).flatten()
}

/// A sink's `Compression`: `auto` (the default: by the file name, `.gz` or `.zst`) or a format.
pub fn read_sink(m: &mut MapReader<'_>, cx: &mut ConfigCx, path: Option<&Path>) -> Compression {
    match m.choice(cx, "Compression", &CHOICES).flatten() {
        Some(c) => c,
        None => path.map_or(Compression::None, Compression::by_extension),
    }
}

/// A configuration error for `OutputMode: append` on a compressed output: the existing file would
/// have to be read back through its compression to check it.
pub fn refuse_compressed_append(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    target: &crate::staging::Target,
    compression: Compression,
) {
    if compression != Compression::None && target.mode == crate::staging::OutputMode::Append {
        m.invalid(
            cx,
            "OutputMode",
            "`replace` or `create` for a compressed output (appending to a compressed file is not supported)",
            "append",
        );
    }
}

/// Plain bytes of a source's input, and the format they were found in.
pub struct Input {
    /// The bytes, decompressed.
    pub reader: Box<dyn Read + Send>,
    /// What the file was.
    pub format: Compression,
}

/// Open `path` (standard input when `stdin`), decompressing it as `compression` says (`None`:
/// by its first bytes).
pub fn open_input(
    path: &Path,
    stdin: bool,
    compression: Option<Compression>,
) -> std::io::Result<Input> {
    let (raw, head): (Box<dyn Read + Send>, Vec<u8>) = if stdin {
        let mut input = std::io::stdin();
        let head = read_head(&mut input)?;
        let chained = std::io::Cursor::new(head.clone()).chain(input);
        (Box::new(chained), head)
    } else {
        let mut file = crate::faults::open_input(path)?;
        let head = read_head(&mut file)?;
        file.seek(SeekFrom::Start(0))?;
        (Box::new(crate::faults::Reads(file)), head)
    };
    let format = compression.unwrap_or_else(|| Compression::sniff(&head));
    let reader = match format {
        Compression::None => raw,
        compressed => Box::new(Decompressing::start(raw, compressed, stdin)),
    };
    Ok(Input { reader, format })
}

/// Up to the first four bytes.
fn read_head(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(4);
    r.by_ref().take(4).read_to_end(&mut head)?;
    Ok(head)
}

/// Bytes decompressed per block handed over.
const BLOCK: usize = 1 << 20;
/// Blocks waiting at most: what decompression may run ahead of the reader.
const AHEAD: usize = 4;

/// The reading end of a decompression thread.
struct Decompressing {
    blocks: Receiver<std::io::Result<Vec<u8>>>,
    block: Vec<u8>,
    at: usize,
}

impl Decompressing {
    fn start(raw: Box<dyn Read + Send>, format: Compression, stdin: bool) -> Self {
        let (send, blocks) = sync_channel(AHEAD);
        let consumed = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: raw,
            consumed: consumed.clone(),
        };
        // The file is named by the error that wraps this one; standard input is not.
        let name = if stdin { " of standard input" } else { "" };
        std::thread::Builder::new()
            .name("decompress".into())
            .spawn(move || {
                let mut decoder: Box<dyn Read> = match format {
                    Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(counted)),
                    Compression::Zstd => match zstd::stream::read::Decoder::new(counted) {
                        Ok(d) => Box::new(d),
                        Err(e) => {
                            let _ = send.send(Err(e));
                            return;
                        }
                    },
                    Compression::None => Box::new(counted),
                };
                loop {
                    let mut block = vec![0; BLOCK];
                    let mut filled = 0;
                    while filled < BLOCK {
                        match decoder.read(&mut block[filled..]) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                let at = consumed.load(Ordering::Relaxed);
                                let _ = send.send(Err(corrupt(name, format, at, e)));
                                return;
                            }
                        }
                    }
                    block.truncate(filled);
                    let last = filled < BLOCK;
                    // A reader that has stopped (a failed run) drops the receiver: stop too.
                    if send.send(Ok(block)).is_err() || last {
                        return;
                    }
                }
            })
            .expect("spawn the decompression thread");
        Decompressing {
            blocks,
            block: Vec::new(),
            at: 0,
        }
    }
}

/// A decompression error, with the file, the format and the compressed byte offset.
fn corrupt(name: &str, format: Compression, at: u64, e: std::io::Error) -> std::io::Error {
    let what = match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "is truncated".to_string(),
        _ => format!("is corrupt ({e})"),
    };
    std::io::Error::new(
        e.kind(),
        format!(
            "the {} stream{name} {what}: decompression stopped at byte {at} of the compressed input",
            format.name()
        ),
    )
}

impl Read for Decompressing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            match self.blocks.recv() {
                Ok(Ok(block)) if block.is_empty() => return Ok(0),
                Ok(Ok(block)) => {
                    self.block = block;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread ended after its last block.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A reader that counts the bytes read through it.
struct Counted {
    inner: Box<dyn Read + Send>,
    consumed: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// `bytes` as one complete gzip member or zstd frame, appended to `out`.
pub fn compress(format: Compression, bytes: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    match format {
        Compression::None => out.extend_from_slice(bytes),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
            encoder.write_all(bytes)?;
            encoder.finish()?;
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(out, 3)?;
            encoder.write_all(bytes)?;
            encoder.finish()?;
        }
    }
    Ok(())
}

/// A sink's encoding, then compression of each batch's bytes as a member or frame of its own.
pub struct Compressed {
    /// The sink's own encoding.
    pub inner: Arc<dyn Encode>,
    /// The compression; never [`Compression::None`] (then the inner encoder is used alone).
    pub format: Compression,
}

impl Encode for Compressed {
    fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), RunError> {
        let mut plain = Vec::new();
        self.inner.encode(batch, &mut plain)?;
        compress(self.format, &plain, out)
            .map_err(|e| RunError::Internal(format!("cannot compress a batch: {e}")))
    }
}

/// `encoder`, compressed as `format` says.
pub fn encoder(encoder: Arc<dyn Encode>, format: Compression) -> Arc<dyn Encode> {
    match format {
        Compression::None => encoder,
        format => Arc::new(Compressed {
            inner: encoder,
            format,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(format: Compression) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut compressed = Vec::new();
        // Two members or frames, as a sink writes them.
        compress(format, b"id,name\n1,a\n", &mut compressed).unwrap();
        compress(format, b"2,b\n", &mut compressed).unwrap();
        file.write_all(&compressed).unwrap();
        let mut input = open_input(file.path(), false, None).unwrap();
        assert_eq!(input.format, format);
        let mut text = String::new();
        input.reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "id,name\n1,a\n2,b\n");
    }

    #[test]
    fn members_and_frames_read_back_as_one_stream() {
        round_trip(Compression::Gzip);
        round_trip(Compression::Zstd);
        round_trip(Compression::None);
    }

    #[test]
    fn a_truncated_stream_names_the_file_and_offset() {
        let mut compressed = Vec::new();
        let text: String = (0..10_000).map(|i| format!("{i},row {i}\n")).collect();
        compress(Compression::Gzip, text.as_bytes(), &mut compressed).unwrap();
        compressed.truncate(compressed.len() / 2);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&compressed).unwrap();
        let mut input = open_input(file.path(), false, None).unwrap();
        let mut out = Vec::new();
        let e = input.reader.read_to_end(&mut out).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("gzip stream"), "{message}");
        assert!(message.contains("is truncated"), "{message}");
        assert!(message.contains("byte"), "{message}");
    }
}
