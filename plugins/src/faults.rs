//! The test-only fault layer: named sites where a build with the `failpoints` feature can make an
//! I/O call fail (`FAILPOINTS="input::read=return(EIO)"`, the `fail` crate). In a normal build
//! every site compiles to nothing and the wrappers below are plain pass-throughs.
//!
//! | site | where |
//! |---|---|
//! | `input::open`, `input::read` | opening and reading a source's file (delimited, JSON Lines, Parquet footers and row groups, Arrow) |
//! | `staging::create`, `staging::write`, `staging::fsync`, `staging::rename`, `staging::dirsync` | [`crate::staging`], also inside the Parquet and Arrow writers |

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A fault a test injected at `site`: `ENOSPC`, `EIO`, `EACCES` or an errno number as the
/// failpoint's argument (EIO without one); always `Ok` in a normal build.
pub fn injected(site: &str) -> std::io::Result<()> {
    let _ = site;
    #[cfg(feature = "failpoints")]
    fail::fail_point!(site, |errno: Option<String>| {
        let code = match errno.as_deref() {
            Some("ENOSPC") => 28,
            Some("EACCES") => 13,
            Some(other) => other.parse().unwrap_or(5),
            None => 5,
        };
        Err(std::io::Error::from_raw_os_error(code))
    });
    Ok(())
}

/// Open a source's file (site `input::open`).
pub fn open_input(path: &Path) -> std::io::Result<File> {
    injected("input::open")?;
    File::open(path)
}

/// A source's bytes, each read passing the site `input::read`.
#[derive(Debug)]
pub struct Reads<R>(pub R);

impl<R: Read> Read for Reads<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        injected("input::read")?;
        self.0.read(buf)
    }
}

impl<R: Seek> Seek for Reads<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.seek(pos)
    }
}

impl parquet::file::reader::Length for Reads<File> {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

/// A Parquet file read by offset (its footer, its row groups), each read passing `input::read`.
impl parquet::file::reader::ChunkReader for Reads<File> {
    type T = std::io::BufReader<File>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        injected("input::read")?;
        self.0.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        injected("input::read")?;
        self.0.get_bytes(start, length)
    }
}

/// A staged output written by a writer that owns its handle (Parquet, Arrow IPC), each write
/// passing the site `staging::write`.
#[derive(Debug)]
pub struct Writes<W>(pub W);

impl<W: Write> Write for Writes<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        injected("staging::write")?;
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
