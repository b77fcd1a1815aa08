//! Reading requests: the device-readable part of a descriptor chain, and reads
//! bounded by the bytes present in it.

use super::error::CmdResult;
use crate::virtio_gpu::protocol::{CommandType, ProtocolError};

/// Reads the device-readable part of a descriptor chain.
pub trait RequestReader {
    /// Bytes left to read.
    fn available(&self) -> usize;
    /// Fills `buf` completely, or returns false (and the reader is then undefined).
    fn read_exact_into(&mut self, buf: &mut [u8]) -> bool;
}

/// A [`RequestReader`] over a byte slice (tests, harnesses).
#[derive(Debug)]
pub struct SliceReader<'a> {
    bytes: &'a [u8],
}

impl<'a> SliceReader<'a> {
    /// Reads from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
}

impl RequestReader for SliceReader<'_> {
    fn available(&self) -> usize {
        self.bytes.len()
    }

    fn read_exact_into(&mut self, buf: &mut [u8]) -> bool {
        match self.bytes.split_at_checked(buf.len()) {
            Some((head, tail)) => {
                buf.copy_from_slice(head);
                self.bytes = tail;
                true
            }
            None => false,
        }
    }
}

pub(super) fn read_exact(
    req: &mut dyn RequestReader,
    n: usize,
    cmd: CommandType,
) -> CmdResult<Vec<u8>> {
    let have = req.available();
    if have < n {
        return Err(ProtocolError::Short { cmd, need: n, have }.into());
    }
    // `n` is bounded by the bytes present in the chain.
    let mut buf = vec![0u8; n];
    if !req.read_exact_into(&mut buf) {
        return Err(ProtocolError::Short { cmd, need: n, have }.into());
    }
    Ok(buf)
}
