//! Host object lifetimes: every device child the guest creates is held as an
//! `Arc<HostObject>` while anything may still use it on the host.
//!
//! Holders: the object table (until the guest destroys the object), the command that
//! is running (every handle the decoder looked up is *pinned* for the whole command, so
//! another ring of the same context cannot destroy it under a driver call), objects
//! created from it (a view holds its image, a pipeline its layout and shaders), memory
//! bound to a buffer or image, what a command buffer's recorded commands reference,
//! what was written into a descriptor set, and every submission until its host fence
//! retires (`queue.rs`, `retire.rs`).
//!
//! `vkDestroy*` / `vkFree*` remove the table entry at once (the guest id is gone) and
//! hand the host destroy call to the object as its drop action: the driver sees the
//! destroy only when the last holder lets go. Objects the guest never destroys have no
//! drop action; context teardown and `vkDestroyDevice` destroy those in dependency
//! order as before. A device itself is destroyed when its last `Arc<DeviceState>` goes
//! (every drop action that calls the driver holds one), so it never goes before its
//! children. Frees of command buffers and descriptor sets only queue the handle on
//! their pool (which they hold); the next command using the pool frees them, under the
//! guest's external synchronization of the pool.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use ash::vk;

/// The host call that destroys an object, run when its last holder drops it.
pub(crate) type DropAction = Box<dyn FnOnce() + Send>;

/// A descriptor slot: (binding, array element).
type Slot = (u32, u32);

/// One host object of a context and everything that must outlive it.
pub(crate) struct HostObject {
    pub(crate) ty: vk::ObjectType,
    pub(crate) raw: u64,
    /// Set when the guest destroyed it: the host destroy call.
    on_drop: Mutex<Option<DropAction>>,
    /// What must outlive it: for most objects what they were created from (a view's
    /// image, a pipeline's layout and shaders) and, for buffers and images, the memory
    /// bound to them; for command buffers their pool and what the recorded commands
    /// use (cleared when the command buffer is reset).
    refs: Mutex<Refs>,
    /// Pools: the command buffers or descriptor sets allocated from them that are
    /// still alive on the host (freed ones included while something holds them).
    children: Mutex<Vec<Weak<HostObject>>>,
    /// Pools: host handles of children the guest freed whose last holder has let go,
    /// freed on the host by the next command that uses the pool (so under the guest's
    /// own external synchronization of the pool, not on whichever thread dropped them).
    freed: Mutex<Vec<u64>>,
    /// Descriptor sets: what each written slot points to.
    slots: Mutex<HashMap<Slot, Vec<Arc<HostObject>>>>,
    /// Submissions in flight that use this object (command buffers, and the descriptor
    /// sets they bind), plus [`RESETTING`] while a reset of it runs: a submission and a
    /// reset from two rings exclude each other here.
    pending: AtomicU32,
}

/// `pending` bit held while the object is being reset on the host.
const RESETTING: u32 = 1 << 31;

#[derive(Default)]
struct Refs {
    list: Vec<Arc<HostObject>>,
    seen: HashSet<usize>,
}

impl std::fmt::Debug for HostObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostObject")
            .field("ty", &self.ty)
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(o: &Arc<HostObject>) -> usize {
    Arc::as_ptr(o) as usize
}

impl HostObject {
    /// A new object with nothing to keep alive yet.
    pub(crate) fn new(ty: vk::ObjectType, raw: u64) -> Arc<Self> {
        Arc::new(Self {
            ty,
            raw,
            on_drop: Mutex::new(None),
            refs: Mutex::default(),
            children: Mutex::default(),
            freed: Mutex::default(),
            slots: Mutex::default(),
            pending: AtomicU32::new(0),
        })
    }

    /// Hands the host destroy call to the object: it runs when the last holder drops it.
    pub(crate) fn destroy_on_drop(&self, action: DropAction) {
        *locked(&self.on_drop) = Some(action);
    }

    /// Forgets the host destroy call (the host object went with its pool's reset).
    pub(crate) fn cancel_drop_action(&self) {
        let action = locked(&self.on_drop).take();
        drop(action);
    }

    /// Records `child` as allocated from this pool.
    pub(crate) fn add_child(&self, child: &Arc<HostObject>) {
        let mut children = locked(&self.children);
        if children.len() >= 64 && children.len().is_power_of_two() {
            children.retain(|c| c.strong_count() > 0);
        }
        children.push(Arc::downgrade(child));
    }

    /// Queues the host free of child `raw` for the next command on this pool.
    pub(crate) fn defer_child_free(&self, raw: u64) {
        locked(&self.freed).push(raw);
    }

    /// Children whose host free is due (see `freed`).
    pub(crate) fn take_freed(&self) -> Vec<u64> {
        std::mem::take(&mut *locked(&self.freed))
    }

    /// This pool's children still alive.
    pub(crate) fn children(&self) -> Vec<Arc<HostObject>> {
        locked(&self.children)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Keeps `others` alive as long as this object (deduplicated; `self` is skipped).
    pub(crate) fn hold(&self, others: impl IntoIterator<Item = Arc<HostObject>>) {
        let mut refs = locked(&self.refs);
        let me = self as *const Self as usize;
        for o in others {
            let k = key(&o);
            if k != me && refs.seen.insert(k) {
                refs.list.push(o);
            }
        }
    }

    /// Lets go of what a command buffer's recorded commands used (it is reset), all
    /// but its pool; returned so the caller drops it outside any lock.
    pub(crate) fn release_recorded(&self) -> Vec<Arc<HostObject>> {
        let mut refs = locked(&self.refs);
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut refs.list)
            .into_iter()
            .partition(|o| o.ty == vk::ObjectType::COMMAND_POOL);
        refs.seen = keep.iter().map(key).collect();
        refs.list = keep;
        gone
    }

    /// What `hold` keeps alive now.
    pub(crate) fn refs(&self) -> Vec<Arc<HostObject>> {
        locked(&self.refs).list.clone()
    }

    /// Replaces what descriptor slot `slot` points to; the old objects are returned.
    pub(crate) fn write_slot(
        &self,
        slot: Slot,
        objects: Vec<Arc<HostObject>>,
    ) -> Vec<Arc<HostObject>> {
        locked(&self.slots)
            .insert(slot, objects)
            .unwrap_or_default()
    }

    /// What descriptor slot `slot` points to.
    pub(crate) fn slot(&self, slot: Slot) -> Vec<Arc<HostObject>> {
        locked(&self.slots).get(&slot).cloned().unwrap_or_default()
    }

    /// Every object a descriptor set points to.
    pub(crate) fn slot_objects(&self) -> Vec<Arc<HostObject>> {
        locked(&self.slots).values().flatten().cloned().collect()
    }

    /// Forgets every slot (the set was reset with its pool).
    pub(crate) fn clear_slots(&self) -> HashMap<Slot, Vec<Arc<HostObject>>> {
        std::mem::take(&mut *locked(&self.slots))
    }

    #[cfg(test)]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire) & !RESETTING > 0
    }

    /// Claims the object for a host reset: only when no submission uses it and no
    /// other reset runs. Released by [`HostObject::end_reset`].
    pub(crate) fn try_begin_reset(&self) -> bool {
        self.pending
            .compare_exchange(0, RESETTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn end_reset(&self) {
        self.pending.fetch_and(!RESETTING, Ordering::AcqRel);
    }

    /// One more submission uses it; false while it is being reset.
    fn begin_use(&self) -> bool {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                if n & RESETTING != 0 {
                    None
                } else {
                    n.checked_add(1).filter(|m| m & RESETTING == 0)
                }
            })
            .is_ok()
    }

    fn end_use(&self) {
        // Never below zero: each end_use pairs with one begin_use in `InFlight`.
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

impl Drop for HostObject {
    fn drop(&mut self) {
        let action = self
            .on_drop
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(action) = action {
            action();
        }
        // `refs` and `slots` drop after the host object is gone, so what it was
        // created from outlives it.
    }
}

/// What one submission keeps alive until its host fence retires: the objects its
/// command buffers (and their secondaries and descriptor sets) use. Command buffers
/// and descriptor sets are marked pending meanwhile.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    held: Vec<Arc<HostObject>>,
    marked: Vec<Arc<HostObject>>,
}

impl InFlight {
    /// Holds `pinned` (what the submit command named) and, through each command
    /// buffer, everything it recorded; marks the command buffers and descriptor sets
    /// pending. `None` if one of them is being reset right now (on another ring: the
    /// guest broke external synchronization), with nothing marked.
    pub(crate) fn new(pinned: Vec<Arc<HostObject>>) -> Option<Self> {
        let mut held = pinned;
        let mut marked = Vec::new();
        let mut seen = HashSet::new();
        let mut stack: Vec<Arc<HostObject>> = held
            .iter()
            .filter(|o| o.ty == vk::ObjectType::COMMAND_BUFFER)
            .cloned()
            .collect();
        // A snapshot of everything reachable: a later reset of a secondary or a
        // rewrite of a descriptor slot cannot drop what this submission uses.
        let mut reached = Vec::new();
        while let Some(cb) = stack.pop() {
            if !seen.insert(key(&cb)) {
                continue;
            }
            for r in cb.refs() {
                match r.ty {
                    vk::ObjectType::COMMAND_BUFFER => stack.push(Arc::clone(&r)),
                    vk::ObjectType::DESCRIPTOR_SET if seen.insert(key(&r)) => {
                        if !r.begin_use() {
                            return Self::abandon(marked);
                        }
                        reached.extend(r.slot_objects());
                        marked.push(Arc::clone(&r));
                    }
                    _ => {}
                }
                reached.push(r);
            }
            if !cb.begin_use() {
                return Self::abandon(marked);
            }
            marked.push(cb);
        }
        held.extend(reached);
        Some(Self { held, marked })
    }

    fn abandon(marked: Vec<Arc<HostObject>>) -> Option<Self> {
        drop(Self {
            held: Vec::new(),
            marked,
        });
        None
    }

    /// Whether it holds anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for o in &self.marked {
            o.end_use();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn flag() -> (Arc<AtomicBool>, DropAction) {
        let f = Arc::new(AtomicBool::new(false));
        let g = Arc::clone(&f);
        (f, Box::new(move || g.store(true, Ordering::SeqCst)))
    }

    #[test]
    fn destroyed_while_in_flight_goes_at_retirement() {
        let buffer = HostObject::new(vk::ObjectType::BUFFER, 1);
        let cb = HostObject::new(vk::ObjectType::COMMAND_BUFFER, 2);
        cb.hold([Arc::clone(&buffer)]);
        let submission = InFlight::new(vec![Arc::clone(&cb)]).expect("not resetting");
        assert!(cb.is_pending());
        // The guest resets the command buffer (refused while pending by the handlers,
        // here only the table drops), destroys the buffer and frees the command buffer.
        let (destroyed, action) = flag();
        buffer.destroy_on_drop(action);
        drop(buffer);
        drop(cb);
        assert!(!destroyed.load(Ordering::SeqCst));
        drop(submission);
        assert!(destroyed.load(Ordering::SeqCst));
    }

    #[test]
    fn descriptor_set_contents_are_held_and_marked_pending() {
        let buffer = HostObject::new(vk::ObjectType::BUFFER, 1);
        let set = HostObject::new(vk::ObjectType::DESCRIPTOR_SET, 2);
        let cb = HostObject::new(vk::ObjectType::COMMAND_BUFFER, 3);
        let old = set.write_slot((0, 0), vec![Arc::clone(&buffer)]);
        assert!(old.is_empty());
        cb.hold([Arc::clone(&set)]);
        let submission = InFlight::new(vec![Arc::clone(&cb)]).expect("not resetting");
        assert!(set.is_pending());
        let (destroyed, action) = flag();
        buffer.destroy_on_drop(action);
        drop(buffer);
        assert!(!destroyed.load(Ordering::SeqCst));
        drop(submission);
        assert!(!set.is_pending());
        drop(cb);
        drop(set);
        assert!(destroyed.load(Ordering::SeqCst));
    }

    #[test]
    fn a_destroy_from_another_ring_waits_for_the_command_using_the_object() {
        let mut st = super::super::objects::State::default();
        st.bind(7, vk::ObjectType::BUFFER, 0x70, 0x1).expect("bind");
        drop(st.take_fresh());
        // Ring A's decoder looks the buffer up (and pins it) for a driver call...
        let pin = st.host_by_id(vk::ObjectType::BUFFER, 7).expect("pinned");
        // ...while ring B destroys it: the id is gone at once, the host call waits.
        let (destroyed, action) = flag();
        st.unbind_host(vk::ObjectType::BUFFER, 0x70)
            .expect("in the table")
            .destroy_on_drop(action);
        assert_eq!(st.lookup(vk::ObjectType::BUFFER, 7), None);
        drop(st.take_graveyard());
        assert!(!destroyed.load(Ordering::SeqCst));
        drop(pin);
        assert!(destroyed.load(Ordering::SeqCst));
    }

    #[test]
    fn resets_and_submissions_exclude_each_other() {
        let cb = HostObject::new(vk::ObjectType::COMMAND_BUFFER, 1);
        let submission = InFlight::new(vec![Arc::clone(&cb)]).expect("not resetting");
        assert!(
            !cb.try_begin_reset(),
            "a pending command buffer cannot be reset"
        );
        drop(submission);
        assert!(cb.try_begin_reset());
        assert!(
            InFlight::new(vec![Arc::clone(&cb)]).is_none(),
            "a command buffer being reset cannot be submitted"
        );
        assert!(!cb.is_pending());
        cb.end_reset();
        assert!(InFlight::new(vec![cb]).is_some());
    }

    #[test]
    fn a_pool_knows_its_freed_but_held_children() {
        let pool = HostObject::new(vk::ObjectType::DESCRIPTOR_POOL, 1);
        let set = HostObject::new(vk::ObjectType::DESCRIPTOR_SET, 2);
        pool.add_child(&set);
        set.hold([Arc::clone(&pool)]);
        let cb = HostObject::new(vk::ObjectType::COMMAND_BUFFER, 3);
        cb.hold([Arc::clone(&set)]);
        let (freed, action) = flag();
        set.destroy_on_drop(action);
        drop(set);
        assert_eq!(pool.children().len(), 1, "held by the command buffer");
        // The pool is reset: the host set went with it, its deferred free must not run.
        for s in pool.children() {
            s.cancel_drop_action();
        }
        drop(cb);
        assert!(!freed.load(Ordering::SeqCst));
        assert!(pool.children().is_empty());
    }

    #[test]
    fn a_view_keeps_its_image() {
        let image = HostObject::new(vk::ObjectType::IMAGE, 1);
        let (destroyed, action) = flag();
        image.destroy_on_drop(action);
        let view = HostObject::new(vk::ObjectType::IMAGE_VIEW, 2);
        view.hold([image]);
        assert!(!destroyed.load(Ordering::SeqCst));
        drop(view);
        assert!(destroyed.load(Ordering::SeqCst));
    }
}
