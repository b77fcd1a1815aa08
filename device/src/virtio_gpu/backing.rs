//! Guest backing of resources: lists of guest-physical ranges, validated against guest
//! memory when attached and read through vm-memory (never as `&[u8]` over guest
//! memory).

use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use super::protocol::MemEntry;

/// Errors about guest backing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackingError {
    /// An entry lies (partly) outside guest memory.
    #[error("entry {index} ({addr:#x}+{len:#x}) is outside guest memory")]
    OutOfRange {
        /// Entry index.
        index: usize,
        /// Guest address.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// The total length overflows.
    #[error("backing length overflows")]
    Overflow,
    /// A read went past the end of the backing.
    #[error("range {offset:#x}+{len:#x} is outside the {total:#x}-byte backing")]
    Short {
        /// Offset.
        offset: u64,
        /// Length.
        len: usize,
        /// Backing size.
        total: u64,
    },
    /// Guest memory refused the read (memory table changed).
    #[error("guest memory read at {0:#x} failed")]
    Read(u64),
}

/// A validated backing: entries with their running start offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backing {
    /// (offset of the entry in the backing, entry).
    entries: Vec<(u64, MemEntry)>,
    total: u64,
}

impl Backing {
    /// Validates `entries` against `mem` (every range present) and sums them.
    pub fn new<M: GuestMemory>(mem: &M, entries: &[MemEntry]) -> Result<Self, BackingError> {
        let mut out = Vec::with_capacity(entries.len());
        let mut total = 0u64;
        for (index, e) in entries.iter().enumerate() {
            let len = usize::try_from(e.length).map_err(|_| BackingError::Overflow)?;
            let in_range = e.addr.checked_add(u64::from(e.length)).is_some()
                && (len == 0 || mem.check_range(GuestAddress(e.addr), len, Permissions::Read));
            if !in_range {
                return Err(BackingError::OutOfRange {
                    index,
                    addr: e.addr,
                    len: e.length,
                });
            }
            out.push((total, *e));
            total = total
                .checked_add(u64::from(e.length))
                .ok_or(BackingError::Overflow)?;
        }
        Ok(Self {
            entries: out,
            total,
        })
    }

    /// Total bytes.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Copies `dst.len()` bytes starting at backing offset `offset` from guest memory.
    pub fn read<M: GuestMemory>(
        &self,
        mem: &M,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), BackingError> {
        let dst_len = dst.len();
        let total = self.total;
        let short = || BackingError::Short {
            offset,
            len: dst_len,
            total,
        };
        let len = u64::try_from(dst.len()).map_err(|_| short())?;
        match offset.checked_add(len) {
            Some(end) if end <= self.total => {}
            _ => return Err(short()),
        }
        // First entry whose range contains `offset`.
        let mut i = self
            .entries
            .partition_point(|(start, e)| start + u64::from(e.length) <= offset);
        let mut done = 0usize;
        let mut pos = offset;
        while done < dst.len() {
            let Some((start, e)) = self.entries.get(i) else {
                return Err(short());
            };
            let inner = pos - start;
            let avail = u64::from(e.length) - inner;
            let n = usize::try_from(avail)
                .unwrap_or(usize::MAX)
                .min(dst.len() - done);
            let addr = e.addr + inner;
            mem.read_slice(&mut dst[done..done + n], GuestAddress(addr))
                .map_err(|_| BackingError::Read(addr))?;
            done += n;
            pos += n as u64;
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::GuestMemoryMmap;

    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0x1000), 0x4000)]).expect("guest memory")
    }

    #[test]
    fn read_spans_entries_in_order() {
        let m = mem();
        m.write_slice(&[1, 2, 3, 4], GuestAddress(0x2000))
            .expect("write");
        m.write_slice(&[5, 6, 7, 8], GuestAddress(0x1000))
            .expect("write");
        let b = Backing::new(
            &m,
            &[
                MemEntry {
                    addr: 0x2000,
                    length: 4,
                },
                MemEntry {
                    addr: 0x1000,
                    length: 4,
                },
            ],
        )
        .expect("valid");
        let mut out = [0u8; 6];
        b.read(&m, 1, &mut out).expect("in range");
        assert_eq!(out, [2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn entries_outside_guest_memory_are_rejected() {
        let m = mem();
        for (addr, length) in [(0x0, 16), (0x4ff0, 0x20), (u64::MAX - 4, 16)] {
            assert!(matches!(
                Backing::new(&m, &[MemEntry { addr, length }]),
                Err(BackingError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn reads_past_the_end_are_rejected() {
        let m = mem();
        let b = Backing::new(
            &m,
            &[MemEntry {
                addr: 0x1000,
                length: 8,
            }],
        )
        .expect("valid");
        let mut out = [0u8; 4];
        assert!(b.read(&m, 5, &mut out).is_err());
        assert!(b.read(&m, u64::MAX, &mut out).is_err());
    }
}
