//! Primitive big-endian readers and writers shared by the control and media codecs.

use bytes::{Buf, BufMut};
use thiserror::Error;

/// Why a message, header or packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more bytes while reading {what}")]
    Truncated { what: &'static str, needed: usize },
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("unknown {what} {value:#04x}")]
    UnknownTag { what: &'static str, value: u8 },
    #[error("invalid {what}: {reason}")]
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error(
        "protocol version {got} is not supported (this side speaks {})",
        crate::PROTOCOL_VERSION
    )]
    UnsupportedVersion { got: u16 },
}

/// A bounds-checked reader over a byte slice: every read names what it reads, so errors say
/// where a message went wrong.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated {
                what,
                needed: n - self.buf.len(),
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        self.need(n, what)?;
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A UTF-8 string with a u16 length prefix, at most `max` bytes.
    pub(crate) fn string(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(what)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        let raw = self.bytes(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::Invalid {
            what,
            reason: "not UTF-8",
        })
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Writes a UTF-8 string with a u16 length prefix. Callers keep strings within the limits the
/// decoder enforces; longer ones are cut at a character boundary rather than producing a
/// message the peer would reject.
pub(crate) fn put_string(out: &mut impl BufMut, s: &str, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}
