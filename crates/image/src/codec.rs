//! A small little-endian, length-prefixed binary codec.
//!
//! The image is read by two programs built from the same sources (the runtime inside the
//! saved process and the CLI), so a hand-written codec with explicit widths is simpler and more
//! predictable than a general serialisation framework, and it cannot allocate behind our back
//! in the middle of a save.

use crate::Error;

/// Appends values to a byte buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }

    /// A byte string, prefixed with its length.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// A list of byte strings, prefixed with their count.
    pub fn bytes_list(&mut self, v: &[Vec<u8>]) {
        self.u64(v.len() as u64);
        for item in v {
            self.bytes(item);
        }
    }

    /// Starts a tagged section; finish it with [`Writer::end_section`].
    /// Sections let a reader skip what it does not know, so later versions can add state
    /// without breaking older readers of the header (for `inspect`).
    pub fn begin_section(&mut self, tag: u32) -> usize {
        self.u32(tag);
        let at = self.buf.len();
        self.u64(0);
        at
    }

    pub fn end_section(&mut self, at: usize) {
        let len = (self.buf.len() - at - 8) as u64;
        self.buf[at..at + 8].copy_from_slice(&len.to_le_bytes());
    }

    /// Overwrites 8 bytes written earlier (used for the header's length field).
    pub fn patch_u64(&mut self, at: usize, v: u64) {
        self.buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// Reads values written by [`Writer`], failing (never panicking) on truncated input.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        if end > self.buf.len() {
            return Err(Error::Truncated);
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }

    pub fn i32(&mut self) -> Result<i32, Error> {
        Ok(self.u32()? as i32)
    }

    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }

    pub fn i64(&mut self) -> Result<i64, Error> {
        Ok(self.u64()? as i64)
    }

    pub fn bool(&mut self) -> Result<bool, Error> {
        Ok(self.u8()? != 0)
    }

    pub fn bytes(&mut self) -> Result<Vec<u8>, Error> {
        let n = self.len_prefix()?;
        Ok(self.take(n)?.to_vec())
    }

    pub fn bytes_list(&mut self) -> Result<Vec<Vec<u8>>, Error> {
        let n = self.len_prefix()?;
        let mut v = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            v.push(self.bytes()?);
        }
        Ok(v)
    }

    /// A count or length; bounded by the bytes left so a corrupt value cannot make us
    /// reserve absurd amounts of memory.
    pub fn len_prefix(&mut self) -> Result<usize, Error> {
        let n = self.u64()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(Error::Truncated);
        }
        Ok(n as usize)
    }

    /// Reads a section header: its tag and a reader over its body.
    pub fn section(&mut self) -> Result<(u32, Reader<'a>), Error> {
        let tag = self.u32()?;
        let n = self.len_prefix()?;
        Ok((tag, Reader::new(self.take(n)?)))
    }
}
