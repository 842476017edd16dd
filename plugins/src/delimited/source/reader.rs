//! Reading: the state machine of a running `DelimitedSource`, on the node thread. It reads
//! sequentially with one decoder until it knows the record width and stands on a record boundary,
//! then cuts ranges (`chunk.rs`) for the workers to split, and goes back to sequential reading from
//! the start of a range the workers found irregular ([`DelimitedSource::redo`]); after
//! [`MAX_REDOS`] redos it stays sequential.
//!
//! Invariant: pieces are handed off in file order and settled in the same order, and a redo
//! restarts the one decoder exactly where the failed range started, with every piece after it, so
//! lines, record numbers and rejects are always those of a one-thread read.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use flowengine_engine::component::Pending;
use flowengine_engine::error::{IoError, RunError};

use super::chunk::{cut, Body, Chunk, Cut, Outcome};
use super::input::{Input, Ranges, READ_SIZE};
use super::typed::SourceSpec;
use crate::delimited::decode::{Checks, Decoder, Records};
use crate::delimited::split::Scan;
use crate::delimited::tokens::Slice;

/// Ranges redone sequentially before the source stops splitting in parallel for good: a file this
/// irregular would pay for most ranges twice.
pub(super) const MAX_REDOS: u32 = 16;

/// A running `DelimitedSource`.
///
/// Splitting bytes into records needs the quote state and line number at the start, so it is
/// sequential unless those are known some other way. The source starts sequentially (one decoder
/// on the node thread, handing each chunk of records off to be converted). Once it knows the record
/// width and stands on a record boundary, it switches to ranges: it cuts the bytes after every
/// `chunk_size` records by counting quotes ([`Scan`]), and each range is split *and* converted on a
/// worker. The count is a guess that the worker checks; [`DelimitedSource::settle`] takes each
/// range in order and redoes a failed one sequentially, from its start, with everything after it.
pub(super) struct DelimitedSource {
    pub(super) shape: Arc<SourceSpec>,
    pub(super) path: PathBuf,
    pub(super) chunk_size: usize,
    /// Input bytes per batch at most: the batch's share of `Settings.MemoryLimit`.
    pub(super) batch_bytes: usize,
    pub(super) checks: Checks,
    pub(super) reading: Reading,
    /// Why ranges are never used, if they are not.
    pub(super) sequential_only: Option<&'static str>,
    /// Pieces handed off and not yet settled, oldest first.
    pub(super) unsettled: VecDeque<Handed>,
    /// Records settled so far (the header counts).
    pub(super) ordinal: u64,
    /// Records read past after the header (`SkipRowsAfterHeader`).
    pub(super) skipped: u64,
    /// How its bytes became UTF-8.
    pub(super) encoding: crate::encoding::SourceEncoding,
    /// What the input file was compressed with.
    pub(super) compressed: crate::compress::Compression,
    /// `MaxRows`, and how many records it still allows.
    pub(super) max_rows: Option<u64>,
    pub(super) remaining: Option<u64>,
    /// Whether the columns' `Index`es were checked against the record width.
    pub(super) widths_checked: bool,
    /// Ranges split on the workers and kept.
    pub(super) ranges: u64,
    /// Ranges redone on the node thread.
    pub(super) redos: u32,
    /// Batches cut at `batch_bytes` before `chunk_size` records.
    pub(super) capped: u64,
}

/// How the source is reading now.
pub(super) enum Reading {
    Sequential(Box<Input>),
    Ranges(Ranges),
    /// Only while switching from one to the other.
    Switching,
}

/// A piece handed off, until it is settled.
pub(super) struct Handed {
    pub(super) outcome: Arc<OnceLock<Outcome>>,
    /// For a range: its bytes, line and offset, to read them again if the guess was wrong.
    pub(super) range: Option<(Slice, u64, u64)>,
}

impl DelimitedSource {
    fn io_error(&self, source: std::io::Error) -> RunError {
        IoError::new(&self.shape.node, "read", &self.path, source).into()
    }

    /// Without a header, the width comes from the first record: check that every `Index` fits.
    fn check_indexes(&mut self, width: usize) -> Result<(), RunError> {
        self.widths_checked = true;
        match self.shape.columns.iter().find(|c| c.field >= width) {
            Some(c) => Err(RunError::Node {
                node: self.shape.node.clone(),
                message: format!(
                    "{}: column `{}` reads field {} (Index {}), but records have {width} fields",
                    self.shape.label,
                    c.name,
                    c.field + 1,
                    c.field
                ),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn hand_off(&mut self, body: Body) -> Box<dyn Pending> {
        let outcome = Arc::new(OnceLock::new());
        let range = match &body {
            Body::Records(_) => None,
            Body::Range {
                bytes,
                line,
                offset,
                ..
            } => Some((bytes.clone(), *line, *offset)),
        };
        self.unsettled.push_back(Handed {
            outcome: outcome.clone(),
            range,
        });
        Box::new(Chunk {
            shape: self.shape.clone(),
            body,
            outcome,
        })
    }

    /// The next chunk of records from the one decoder.
    pub(super) fn next_records(&mut self) -> Result<Option<Body>, RunError> {
        let Reading::Sequential(input) = &mut self.reading else {
            return Err(RunError::Internal("not reading sequentially".into()));
        };
        let want = match self.remaining {
            Some(0) => return Ok(None),
            Some(n) => n.min(self.chunk_size as u64) as usize,
            None => self.chunk_size,
        };
        let mut records = Records::with_cap(self.batch_bytes);
        let read = input.read(&mut records, want);
        let width = input.decoder.width();
        let capped = records.len() < want && !input.decoder.is_done();
        read.map_err(|e| self.io_error(e))?;
        if records.is_empty() {
            return Ok(None);
        }
        if let Some(n) = self.remaining.as_mut() {
            *n -= records.len() as u64;
        }
        self.capped += u64::from(capped);
        if let (false, Some(width)) = (self.widths_checked, width) {
            self.check_indexes(width)?;
        }
        self.switch_to_ranges();
        Ok(Some(Body::Records(records)))
    }

    /// Cut ranges from here on, if the decoder stands where a new one could start.
    fn switch_to_ranges(&mut self) {
        let Reading::Sequential(input) = &self.reading else {
            return;
        };
        let d = &input.decoder;
        let ready = d.at_record_boundary() && d.width().is_some() && self.widths_checked;
        if self.sequential_only.is_some() || self.redos >= MAX_REDOS || !ready {
            return;
        }
        let Reading::Sequential(input) = std::mem::replace(&mut self.reading, Reading::Switching)
        else {
            return;
        };
        self.checks.width = input.decoder.width();
        self.reading = Reading::Ranges(Ranges {
            block: Arc::new(input.buf[input.start..input.end].to_vec()),
            start: 0,
            scan: Scan::new(self.shape.dialect.quote),
            line: input.decoder.line(),
            offset: input.decoder.offset(),
            eof: input.eof,
            file: input.file,
        });
    }

    /// The next range: `chunk_size` records by the quote count, or the rest of the file.
    pub(super) fn next_range(&mut self) -> Result<Option<Body>, RunError> {
        let Reading::Ranges(r) = &mut self.reading else {
            return Err(RunError::Internal("not reading ranges".into()));
        };
        let (len, force_redo) = loop {
            let rest = &r.block[r.start..];
            let max_record_bytes = self.checks.max_record_bytes;
            match cut(
                &mut r.scan,
                rest,
                r.eof,
                self.chunk_size,
                self.batch_bytes,
                max_record_bytes,
            ) {
                Cut::Records(len) => {
                    self.capped += u64::from(r.scan.records() < self.chunk_size);
                    break (len, false);
                }
                Cut::Rest(len) => break (len, false),
                // The decoder must read this sequentially.
                Cut::Redo(len) => break (len, true),
                Cut::End => return Ok(None),
                Cut::More => {}
            }
            if let Err(e) = r.read_block(self.batch_bytes.max(READ_SIZE)) {
                return Err(self.io_error(e));
            }
        };
        let bytes = Slice {
            block: r.block.clone(),
            start: r.start,
            end: r.start + len,
        };
        r.start += len;
        let (line, offset) = (r.line, r.offset);
        r.line += r.scan.lines();
        r.offset += len as u64;
        r.scan = Scan::new(self.shape.dialect.quote);
        Ok(Some(Body::Range {
            bytes,
            line,
            offset,
            checks: self.checks,
            force_redo,
        }))
    }

    /// Read `first` and everything handed off after it again, sequentially.
    pub(super) fn redo(&mut self, first: (Slice, u64, u64)) {
        self.redos += 1;
        let (bytes, line, offset) = first;
        let mut again = bytes.to_vec();
        for later in self.unsettled.drain(..) {
            if let Some((bytes, ..)) = later.range {
                again.extend_from_slice(&bytes);
            }
        }
        let Reading::Ranges(r) = std::mem::replace(&mut self.reading, Reading::Switching) else {
            unreachable!("only ranges are redone");
        };
        again.extend_from_slice(&r.block[r.start..]);
        let decoder = Decoder::new(self.shape.dialect, self.checks, line, offset);
        self.reading = Reading::Sequential(Box::new(Input::resume(r.file, again, r.eof, decoder)));
    }
}
