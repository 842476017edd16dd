//! Byte input: the file's bytes, read in order, for the two ways the source splits them.
//!
//! [`Input`] is the sequential way: a buffer that skips the UTF-8 byte-order mark and `SkipRows`
//! lines once, then feeds the one [`Decoder`]. [`Ranges`] is the parallel way: blocks read from
//! the file, which the ranges cut from them share without copying (see `chunk.rs` for the cut).
//!
//! Invariant: bytes are consumed only in file order, and the decoder's `line()`/`offset()` (for
//! [`Input`]) or `line`/`offset` (for [`Ranges`]) are always the line and absolute offset of the
//! first byte not yet consumed, so either way of reading can hand over to the other.

use std::io::Read;
use std::sync::Arc;

use crate::delimited::decode::{Checks, Decoder, Dialect, Records};
use crate::delimited::split::Scan;

/// Bytes read from the file at a time.
pub(super) const READ_SIZE: usize = 1 << 20;

/// Bytes from a file, fed to a [`Decoder`].
pub(super) struct Input {
    pub(super) file: Box<dyn Read + Send>,
    pub(super) buf: Vec<u8>,
    /// Where the bytes read but not yet decoded start in `buf`.
    pub(super) start: usize,
    /// Where they end.
    pub(super) end: usize,
    pub(super) eof: bool,
    pub(super) decoder: Decoder,
}

impl Input {
    /// Open, skip a UTF-8 byte-order mark and `skip_rows` physical lines.
    pub(super) fn new(
        file: Box<dyn Read + Send>,
        dialect: Dialect,
        checks: Checks,
        skip_rows: u64,
    ) -> std::io::Result<Self> {
        let mut input = Self {
            file,
            buf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
            eof: false,
            decoder: Decoder::new(dialect, checks, 1, 0),
        };
        input.fill()?;
        if input.buf[..input.end].starts_with(b"\xEF\xBB\xBF") {
            input.start = 3;
        }
        let mut line = 1;
        let mut offset = input.start as u64;
        while line <= skip_rows {
            let unread = &input.buf[input.start..input.end];
            // A line ends at `\n`, `\r\n` or a lone `\r`; a `\r` at the end of the buffer waits
            // for the next byte to tell which.
            match memchr::memchr2(b'\n', b'\r', unread) {
                Some(i) if unread[i] == b'\r' && i + 1 == unread.len() && !input.eof => {
                    input.fill()?
                }
                Some(i) => {
                    let crlf = unread[i] == b'\r' && unread.get(i + 1) == Some(&b'\n');
                    let used = i + 1 + usize::from(crlf);
                    input.start += used;
                    offset += used as u64;
                    line += 1;
                }
                None => {
                    offset += unread.len() as u64;
                    input.start = input.end;
                    if input.eof {
                        break;
                    }
                    input.fill()?;
                }
            }
        }
        input.decoder = Decoder::new(dialect, checks, line, offset);
        Ok(input)
    }

    /// Go on reading `file` after `unread`, the bytes before it that were read but not decoded.
    pub(super) fn resume(
        file: Box<dyn Read + Send>,
        mut unread: Vec<u8>,
        eof: bool,
        decoder: Decoder,
    ) -> Self {
        let end = unread.len();
        unread.resize(end.max(READ_SIZE), 0);
        Self {
            file,
            buf: unread,
            start: 0,
            end,
            eof,
            decoder,
        }
    }

    /// Move unread bytes to the front and read more after them.
    fn fill(&mut self) -> std::io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Decode until `records` holds `limit` records or the file ends.
    pub(super) fn read(&mut self, records: &mut Records, limit: usize) -> std::io::Result<()> {
        loop {
            let input = &self.buf[self.start..self.end];
            self.start += self.decoder.decode(input, self.eof, records, limit);
            if records.is_full(limit) || self.decoder.is_done() {
                return Ok(());
            }
            self.fill()?;
        }
    }
}

/// The file, cut into ranges of records by counting quotes.
pub(super) struct Ranges {
    pub(super) file: Box<dyn Read + Send>,
    /// The bytes read last; ranges cut from them share them.
    pub(super) block: Arc<Vec<u8>>,
    /// Where the range being cut starts in `block`.
    pub(super) start: usize,
    pub(super) scan: Scan,
    /// Line and absolute offset of `block[start]`.
    pub(super) line: u64,
    pub(super) offset: u64,
    pub(super) eof: bool,
}

impl Ranges {
    /// Read up to `size` more bytes into a new block that starts with the unused rest of this one
    /// (the start of the range being cut). Ranges already cut keep the old block alive, so their
    /// bytes are never copied; only that rest is.
    pub(super) fn read_block(&mut self, size: usize) -> std::io::Result<()> {
        let rest = &self.block[self.start..];
        // A long record grows the rest: read at least as much again, so copying it stays linear.
        let size = size.max(rest.len());
        let mut next = Vec::with_capacity(rest.len() + size);
        next.extend_from_slice(rest);
        // `read_to_end` reads into the spare capacity reserved above, without growing it.
        let n = (&mut self.file).take(size as u64).read_to_end(&mut next)?;
        self.eof = n == 0;
        self.block = Arc::new(next);
        self.start = 0;
        Ok(())
    }
}
