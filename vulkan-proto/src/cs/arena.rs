//! The per-command arena and the decode context (`Cx`): allocation budget, typed object-id
//! lookup, and the array/blob/string readers the generated code calls.

use core::ffi::CStr;

use ash::vk;
use bumpalo::Bump;

use super::decoder::Decoder;
use super::error::{DecodeError, Result};
use super::ids::{HandleMap, ObjectId};

/// Default allocation budget of one command: 32 MiB.
pub const DEFAULT_BUDGET: usize = 32 << 20;

/// Memory for one command's decoded arguments. Everything is freed by [`Arena::reset`]
/// before the next command. Allocations beyond the budget fail with
/// [`DecodeError::Budget`] instead of growing without bound.
#[derive(Debug)]
pub struct Arena {
    bump: Bump,
}

impl Default for Arena {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

impl Arena {
    /// An arena that hands out at most about `budget` bytes between resets.
    pub fn new(budget: usize) -> Self {
        let bump = Bump::new();
        bump.set_allocation_limit(Some(budget));
        Self { bump }
    }

    /// Frees everything allocated since the last reset.
    pub fn reset(&mut self) {
        self.bump.reset();
    }

    /// The underlying bump allocator (for the test value generator).
    #[cfg(feature = "testgen")]
    pub(crate) fn bump(&self) -> &Bump {
        &self.bump
    }

    /// Bytes currently allocated (chunk granularity).
    pub fn allocated_bytes(&self) -> usize {
        self.bump.allocated_bytes()
    }
}

/// Decode context: where decoded values live and how guest ids become host handles.
#[derive(Copy, Clone)]
pub struct Cx<'a, 'h> {
    arena: &'a Arena,
    handles: &'h dyn HandleMap,
}

impl core::fmt::Debug for Cx<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cx")
            .field("arena", &self.arena)
            .finish_non_exhaustive()
    }
}

impl<'a, 'h> Cx<'a, 'h> {
    /// A context allocating in `arena` and translating handles with `handles`.
    pub fn new(arena: &'a Arena, handles: &'h dyn HandleMap) -> Self {
        Self { arena, handles }
    }

    /// Moves `v` into the arena.
    #[inline]
    pub fn alloc<T>(&self, d: &mut Decoder<'_>, v: T) -> Result<&'a mut T> {
        let at = d.position();
        self.arena.bump.try_alloc(v).map_err(|_| {
            d.fail(DecodeError::Budget {
                at,
                bytes: core::mem::size_of::<T>(),
            })
        })
    }

    /// Moves `v` into the arena and returns a raw pointer for an ash struct member.
    #[inline]
    pub fn alloc_ptr<T>(&self, d: &mut Decoder<'_>, v: T) -> Result<*mut T> {
        self.alloc(d, v).map(core::ptr::from_mut)
    }

    /// Reads an object id and translates it to a host handle of type `ty`. Id 0 is the
    /// NULL handle.
    #[inline]
    pub fn handle(&self, d: &mut Decoder<'_>, ty: vk::ObjectType) -> Result<u64> {
        let at = d.position();
        let id = d.u64()?;
        if id == 0 {
            return Ok(0);
        }
        self.handles
            .lookup(ty, ObjectId(id))
            .ok_or_else(|| d.fail(DecodeError::UnknownObject { at, ty, id }))
    }

    #[inline]
    fn slice<T: Copy>(&self, d: &mut Decoder<'_>, n: usize, fill: T) -> Result<&'a mut [T]> {
        let at = d.position();
        self.arena
            .bump
            .try_alloc_slice_fill_copy(n, fill)
            .map_err(|_| {
                d.fail(DecodeError::Budget {
                    at,
                    bytes: n.saturating_mul(core::mem::size_of::<T>()),
                })
            })
    }

    /// Reads an array size and checks it against the count member. `Ok(None)` is a NULL
    /// array.
    #[inline]
    fn array_len(
        &self,
        d: &mut Decoder<'_>,
        expected: u64,
        nullable: bool,
        min_wire: usize,
    ) -> Result<Option<usize>> {
        let at = d.position();
        let n = d.array_size()?;
        if n == 0 {
            if expected != 0 && !nullable {
                return Err(d.fail(DecodeError::NullArray {
                    at,
                    count: expected,
                }));
            }
            return Ok(None);
        }
        if n != expected {
            return Err(d.fail(DecodeError::ArraySize {
                at,
                expected,
                found: n,
            }));
        }
        let remaining = d.remaining();
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_wire))
            .is_some_and(|bytes| bytes <= remaining);
        if !fits {
            return Err(d.fail(DecodeError::TooManyElements {
                at,
                count: n,
                remaining,
            }));
        }
        usize::try_from(n)
            .map(Some)
            .map_err(|_| d.fail(DecodeError::Overflow { at, value: n }))
    }

    /// Reads an array whose elements are on the wire: size (checked against `expected`,
    /// and against the bytes left at `min_wire` bytes per element) then each element.
    #[inline]
    pub fn array<T: Copy>(
        &self,
        d: &mut Decoder<'_>,
        expected: u64,
        nullable: bool,
        min_wire: usize,
        fill: T,
        mut f: impl FnMut(&mut Decoder<'_>, &Self) -> Result<T>,
    ) -> Result<Option<&'a mut [T]>> {
        let Some(n) = self.array_len(d, expected, nullable, min_wire)? else {
            return Ok(None);
        };
        let s = self.slice(d, n, fill)?;
        for x in s.iter_mut() {
            *x = f(d, self)?;
        }
        Ok(Some(s))
    }

    /// An output array of plain values: only its size is on the wire. Bounded by the
    /// arena budget.
    #[inline]
    pub fn out_array<T: Copy>(
        &self,
        d: &mut Decoder<'_>,
        expected: u64,
        nullable: bool,
        fill: T,
    ) -> Result<Option<&'a mut [T]>> {
        let Some(n) = self.array_len(d, expected, nullable, 0)? else {
            return Ok(None);
        };
        self.slice(d, n, fill).map(Some)
    }

    /// A sized byte blob: size (must equal `expected`) then the bytes, padded.
    #[inline]
    pub fn blob(
        &self,
        d: &mut Decoder<'_>,
        expected: u64,
        nullable: bool,
    ) -> Result<Option<&'a mut [u8]>> {
        let Some(n) = self.array_len(d, expected, nullable, 1)? else {
            return Ok(None);
        };
        let bytes = d.take(n)?;
        let at = d.position();
        self.arena
            .bump
            .try_alloc_slice_copy(bytes)
            .map(Some)
            .map_err(|_| d.fail(DecodeError::Budget { at, bytes: n }))
    }

    /// An output blob: only its size is on the wire.
    pub fn out_blob(
        &self,
        d: &mut Decoder<'_>,
        expected: u64,
        nullable: bool,
    ) -> Result<Option<&'a mut [u8]>> {
        self.out_array(d, expected, nullable, 0u8)
    }

    /// A `const char*`: size (strlen + 1, 0 = NULL), then the bytes. The last byte is
    /// forced to NUL, as vkr does.
    pub fn string(&self, d: &mut Decoder<'_>) -> Result<Option<&'a CStr>> {
        let at = d.position();
        let n = d.array_size()?;
        if n == 0 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| d.fail(DecodeError::Overflow { at, value: n }))?;
        let bytes = d.take(n)?;
        let s = self
            .arena
            .bump
            .try_alloc_slice_copy(bytes)
            .map_err(|_| d.fail(DecodeError::Budget { at, bytes: n }))?;
        if let Some(last) = s.last_mut() {
            *last = 0;
        }
        // The first NUL ends the string; one exists because the last byte is NUL.
        CStr::from_bytes_until_nul(s)
            .map(Some)
            .map_err(|_| d.fail(DecodeError::EmptyString { at }))
    }
}

/// The raw pointer an ash struct member gets for a decoded array (NULL for `None`).
pub fn slice_ptr<T>(s: Option<&mut [T]>) -> *mut T {
    s.map_or(core::ptr::null_mut(), <[T]>::as_mut_ptr)
}
