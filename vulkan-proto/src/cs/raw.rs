//! The only place the codec reads through raw pointers: ash structs hold raw pointers, and
//! encoding one means following them. Every function here is `unsafe` and states what the
//! caller must guarantee; the generated encoders forward that contract to their callers.

use core::ffi::{c_char, c_void, CStr};

use ash::vk;

/// Most chain entries [`chain`] looks at before giving up (guards against cycles).
const MAX_CHAIN_WALK: usize = 4096;

/// `p` as a reference, or `None` if NULL.
///
/// # Safety
///
/// `p` must be NULL or valid for reads of one `T` for `'x`.
pub unsafe fn opt_ref<'x, T>(p: *const T) -> Option<&'x T> {
    // SAFETY: the caller guarantees `p` is NULL or points to a live, aligned `T`.
    unsafe { p.as_ref() }
}

/// `n` elements at `p`, or `None` if `p` is NULL or `n` does not fit `usize`.
///
/// # Safety
///
/// If `p` is not NULL it must be aligned and valid for reads of `n` consecutive `T` for `'x`.
pub unsafe fn slice<'x, T>(p: *const T, n: u64) -> Option<&'x [T]> {
    if p.is_null() {
        return None;
    }
    let n = usize::try_from(n).ok()?;
    // SAFETY: `p` is non-NULL, and the caller guarantees it is aligned and valid for `n`
    // reads that nothing mutates during `'x`.
    Some(unsafe { core::slice::from_raw_parts(p, n) })
}

/// The NUL-terminated string at `p`, or `None` if NULL.
///
/// # Safety
///
/// If `p` is not NULL it must point to a NUL-terminated string valid for `'x`.
pub unsafe fn cstr<'x>(p: *const c_char) -> Option<&'x CStr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination and validity.
    Some(unsafe { CStr::from_ptr(p) })
}

/// Walks a pNext chain and records, in order, the entries whose sType `keep` accepts.
/// Returns how many were recorded; stops when `out` is full.
///
/// # Safety
///
/// `p` must be NULL or point to a valid Vulkan structure chain: every entry starts with
/// `VkStructureType sType; const void* pNext;` and stays valid while it is walked.
pub unsafe fn chain(
    p: *const c_void,
    out: &mut [(i32, *const c_void)],
    keep: impl Fn(i32) -> bool,
) -> usize {
    let mut n = 0;
    let mut cur = p;
    for _ in 0..MAX_CHAIN_WALK {
        if cur.is_null() {
            break;
        }
        // SAFETY: the caller guarantees every chain entry is a valid Vulkan structure,
        // which begins with the `VkBaseInStructure` layout.
        let base = unsafe { &*cur.cast::<vk::BaseInStructure<'_>>() };
        let st = base.s_type.as_raw();
        if keep(st) {
            let Some(slot) = out.get_mut(n) else { break };
            *slot = (st, cur);
            n += 1;
        }
        cur = base.p_next.cast();
    }
    n
}
