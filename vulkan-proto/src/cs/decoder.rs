//! Bounds-checked little-endian reads on 4-byte granules, with a sticky fatal state.

use super::error::{DecodeError, Result};
use crate::generated::types::CommandFlags;

/// Reads a Venus stream. Every read is bounds-checked; the first failure is remembered and
/// every later read fails with [`DecodeError::Fatal`], like vkr's sticky fatal flag.
#[derive(Debug)]
pub struct Decoder<'d> {
    buf: &'d [u8],
    pos: usize,
    fatal: bool,
}

fn pad4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|x| x & !3)
}

impl<'d> Decoder<'d> {
    /// A decoder over `buf`.
    pub fn new(buf: &'d [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            fatal: false,
        }
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Whether a previous read failed.
    #[inline]
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// Records `e` as fatal and returns it.
    #[cold]
    pub fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.fatal = true;
        e
    }

    /// Takes `n` bytes (rounded up to 4 on the stream), returning the first `n`.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'d [u8]> {
        if self.fatal {
            return Err(DecodeError::Fatal);
        }
        let at = self.pos;
        let Some(padded) = pad4(n) else {
            return Err(self.fail(DecodeError::Overflow {
                at,
                value: n as u64,
            }));
        };
        if padded > self.remaining() {
            return Err(self.fail(DecodeError::Truncated { at, need: padded }));
        }
        let out = &self.buf[at..at + n];
        self.pos = at + padded;
        Ok(out)
    }

    #[inline]
    fn word<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A `uint32_t`.
    #[inline]
    pub fn u32(&mut self) -> Result<u32> {
        self.word::<4>().map(u32::from_le_bytes)
    }

    /// An `int32_t`.
    #[inline]
    pub fn i32(&mut self) -> Result<i32> {
        self.word::<4>().map(i32::from_le_bytes)
    }

    /// A `uint64_t` (4-byte aligned on the wire).
    #[inline]
    pub fn u64(&mut self) -> Result<u64> {
        self.word::<8>().map(u64::from_le_bytes)
    }

    /// An `int64_t`.
    #[inline]
    pub fn i64(&mut self) -> Result<i64> {
        self.word::<8>().map(i64::from_le_bytes)
    }

    /// A `float` (raw bits).
    #[inline]
    pub fn f32(&mut self) -> Result<f32> {
        self.u32().map(f32::from_bits)
    }

    /// A `double` (raw bits).
    #[inline]
    pub fn f64(&mut self) -> Result<f64> {
        self.u64().map(f64::from_bits)
    }

    /// A `uint8_t`, padded to 4 bytes.
    #[inline]
    pub fn u8(&mut self) -> Result<u8> {
        self.word::<4>().map(|b| b[0])
    }

    /// A `uint16_t`, padded to 4 bytes.
    #[inline]
    pub fn u16(&mut self) -> Result<u16> {
        self.word::<4>().map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    /// A `size_t` (u64 on the wire).
    #[inline]
    pub fn usize(&mut self) -> Result<usize> {
        let at = self.pos;
        let v = self.u64()?;
        usize::try_from(v).map_err(|_| self.fail(DecodeError::Overflow { at, value: v }))
    }

    /// A pointer presence marker: 0 (NULL) or 1 (present).
    #[inline]
    pub fn ptr(&mut self) -> Result<bool> {
        let at = self.pos;
        match self.u64()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(self.fail(DecodeError::BadPointerMarker { at, value })),
        }
    }

    /// An array size (u64), unchecked.
    #[inline]
    pub fn array_size(&mut self) -> Result<u64> {
        self.u64()
    }

    /// An array size that must equal `n` (fixed arrays).
    #[inline]
    pub fn expect_array_size(&mut self, n: u64) -> Result<()> {
        let at = self.pos;
        let found = self.u64()?;
        if found == n {
            Ok(())
        } else {
            Err(self.fail(DecodeError::ArraySize {
                at,
                expected: n,
                found,
            }))
        }
    }

    /// An sType that must equal `expected`.
    #[inline]
    pub fn stype(&mut self, expected: i32) -> Result<()> {
        let at = self.pos;
        let found = self.i32()?;
        if found == expected {
            Ok(())
        } else {
            Err(self.fail(DecodeError::BadSType {
                at,
                expected,
                found,
            }))
        }
    }

    /// An enum value checked by `valid`.
    #[inline]
    pub fn enum_value(&mut self, valid: fn(i32) -> bool, ty: &'static str) -> Result<i32> {
        let at = self.pos;
        let value = self.i32()?;
        if valid(value) {
            Ok(value)
        } else {
            Err(self.fail(DecodeError::BadEnum { at, ty, value }))
        }
    }

    /// The `pAllocator` slot, which must be NULL.
    #[inline]
    pub fn allocator(&mut self) -> Result<()> {
        let at = self.pos;
        if self.u64()? == 0 {
            Ok(())
        } else {
            Err(self.fail(DecodeError::NonNullAllocator { at }))
        }
    }

    /// Command flags: only GENERATE_REPLY may be set.
    #[inline]
    pub fn command_flags(&mut self) -> Result<CommandFlags> {
        let at = self.pos;
        let flags = self.u32()?;
        if flags & !1 == 0 {
            Ok(CommandFlags(flags))
        } else {
            Err(self.fail(DecodeError::BadCommandFlags { at, flags }))
        }
    }

    /// The command type at the start of a reply, which must be `expected`.
    pub fn expect_command(&mut self, expected: u32) -> Result<()> {
        let at = self.pos;
        let found = self.u32()?;
        if found == expected {
            Ok(())
        } else {
            Err(self.fail(DecodeError::WrongReply {
                at,
                expected,
                found,
            }))
        }
    }

    /// Reads `char x[N]` bytes (padded) and forces the last byte to NUL.
    pub fn chars_into(&mut self, out: &mut [core::ffi::c_char]) -> Result<()> {
        let b = self.take(out.len())?;
        for (o, i) in out.iter_mut().zip(b) {
            *o = i.cast_signed();
        }
        if let Some(last) = out.last_mut() {
            *last = 0;
        }
        Ok(())
    }

    /// Reads `uint8_t x[N]` bytes (padded).
    pub fn bytes_into(&mut self, out: &mut [u8]) -> Result<()> {
        let b = self.take(out.len())?;
        out.copy_from_slice(b);
        Ok(())
    }

    /// Reads the pNext chain headers (`u64 1, i32 sType` pairs up to `u64 0`) into `out`,
    /// checking each sType with `allowed`. Returns how many were read.
    pub fn chain_headers(
        &mut self,
        out: &mut [i32],
        allowed: impl Fn(i32) -> bool,
        parent: &'static str,
    ) -> Result<usize> {
        let mut n = 0;
        while self.ptr()? {
            let at = self.pos;
            let s = self.i32()?;
            if !allowed(s) {
                return Err(self.fail(DecodeError::UnexpectedSType {
                    at,
                    parent,
                    found: s,
                }));
            }
            let Some(slot) = out.get_mut(n) else {
                return Err(self.fail(DecodeError::ChainTooLong {
                    at,
                    parent,
                    max: out.len(),
                }));
            };
            *slot = s;
            n += 1;
        }
        Ok(n)
    }

    /// Error for an sType that reached a chain decoder without being allowed.
    pub fn unexpected_stype(&mut self, parent: &'static str, found: i32) -> DecodeError {
        let at = self.pos;
        self.fail(DecodeError::UnexpectedSType { at, parent, found })
    }

    /// Error for a bad union tag.
    pub fn bad_union_tag(&mut self, ty: &'static str, tag: u32) -> DecodeError {
        let at = self.pos;
        self.fail(DecodeError::BadUnionTag { at, ty, tag })
    }

    /// Error for a NULL required parameter.
    pub fn null_required(&mut self, command: &'static str, param: &'static str) -> DecodeError {
        let at = self.pos;
        self.fail(DecodeError::NullRequired { at, command, param })
    }

    /// Error for an unknown command type (the header has been consumed).
    pub fn unknown_command(&mut self, ty: u32) -> DecodeError {
        let at = self.pos.saturating_sub(8);
        self.fail(DecodeError::UnknownCommand { at, ty })
    }
}
