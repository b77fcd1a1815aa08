//! Reply streams: where a stream's replies go (`vkSetReplyCommandStreamMESA`).
//!
//! Each stream (the context stream and every ring) has its own reply target; the
//! target is a range of a shared-memory resource and a cursor inside it.

use std::sync::Arc;

use super::executor::TransportError;
use super::resource::Resource;
use crate::ids::ResourceId;
use crate::sys::SharedMemory;

#[derive(Debug)]
struct ReplyTarget {
    res: ResourceId,
    mem: Arc<SharedMemory>,
    offset: u64,
    size: u64,
    cursor: u64,
}

/// Per-stream reply state.
#[derive(Debug, Default)]
pub(crate) struct ReplyStream {
    target: Option<ReplyTarget>,
}

impl ReplyStream {
    /// Points replies at `offset..offset+size` of `res`.
    pub(crate) fn set(
        &mut self,
        id: ResourceId,
        res: &Resource,
        offset: u64,
        size: u64,
    ) -> Result<(), TransportError> {
        let mem = res.shmem().ok_or(TransportError::NotShmem(id))?;
        let end = offset
            .checked_add(size)
            .ok_or(TransportError::RangeOutsideResource {
                res: id,
                offset,
                size,
            })?;
        if end > res.size() {
            return Err(TransportError::RangeOutsideResource {
                res: id,
                offset,
                size,
            });
        }
        self.target = Some(ReplyTarget {
            res: id,
            mem: Arc::clone(mem),
            offset,
            size,
            cursor: 0,
        });
        Ok(())
    }

    /// Moves the cursor to `position` bytes from the start of the target range.
    pub(crate) fn seek(&mut self, position: u64) -> Result<(), TransportError> {
        let target = self.target.as_mut().ok_or(TransportError::NoReplyStream)?;
        if position > target.size {
            return Err(TransportError::ReplyOverflow {
                res: target.res,
                position,
                size: target.size,
            });
        }
        target.cursor = position;
        Ok(())
    }

    /// Appends `bytes` at the cursor.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let target = self.target.as_mut().ok_or(TransportError::NoReplyStream)?;
        let len = bytes.len() as u64;
        let end = target
            .cursor
            .checked_add(len)
            .filter(|&e| e <= target.size)
            .ok_or(TransportError::ReplyOverflow {
                res: target.res,
                position: target.cursor.saturating_add(len),
                size: target.size,
            })?;
        target
            .mem
            .write(target.offset + target.cursor, bytes)
            .map_err(TransportError::Shm)?;
        target.cursor = end;
        Ok(())
    }

    /// The current target resource and cursor, if any.
    pub(crate) fn position(&self) -> Option<(ResourceId, u64)> {
        self.target.as_ref().map(|t| (t.res, t.cursor))
    }
}
