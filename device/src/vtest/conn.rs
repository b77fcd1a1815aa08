//! One vtest connection: reads messages, answers them, owns the connection's context.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::protocol::{self, cmd, CreateBlob, Payload, ProtocolError, SyncWait};
use super::sync::{SyncError, SyncTable, WaitBudget};
use super::ServerShared;
use crate::ids::{BlobId, CapsetId, ContextId, ResourceId, SyncId};
use crate::renderer::{Context, ContextError, ExecError, FenceDone};
use crate::sys::{send_fd, FdError};

/// Why a connection was dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// Socket I/O failed (including the client hanging up mid-message).
    #[error("socket I/O failed")]
    Io(#[from] std::io::Error),
    /// The client did not finish the handshake (up to CONTEXT_INIT) in time.
    #[error("no CONTEXT_INIT within {0:?} of connecting")]
    HandshakeTimeout(Duration),
    /// The client started a message and did not finish it in time.
    #[error("a message was not completed within {0:?}")]
    MessageTimeout(Duration),
    /// The client did not read its replies: a write stayed blocked this long.
    #[error("replies not read for {0:?} (the client stopped reading)")]
    ReplyTimeout(Duration),
    /// The first message was not CREATE_RENDERER.
    #[error("first command {0} is not CREATE_RENDERER")]
    NotCreateRenderer(u32),
    /// A second CREATE_RENDERER.
    #[error("CREATE_RENDERER sent twice")]
    RendererTwice,
    /// CREATE_RENDERER name length out of range.
    #[error("CREATE_RENDERER name length {0} is not 1..=4096 bytes")]
    BadNameLen(u32),
    /// A message longer than the configured cap.
    #[error("command {cmd} with {len} dwords exceeds the {max}-byte message limit")]
    TooLarge {
        /// Command id.
        cmd: u32,
        /// LEN in dwords.
        len: u32,
        /// Cap in bytes.
        max: usize,
    },
    /// A command this server does not implement.
    #[error("unknown or unsupported command {0}")]
    UnknownCommand(u32),
    /// A payload did not parse.
    #[error("malformed message")]
    Protocol(#[from] ProtocolError),
    /// A context command before CONTEXT_INIT.
    #[error("command {0} before CONTEXT_INIT")]
    NoContext(u32),
    /// CONTEXT_INIT with an unsupported or different capset.
    #[error("CONTEXT_INIT with {0} (only the Venus capset 4 is served)")]
    BadCapset(CapsetId),
    /// A blob type or flag this server does not serve.
    #[error("RESOURCE_CREATE_BLOB type {blob_type} flags {flags:#x} is not supported")]
    BadBlob {
        /// Blob type.
        blob_type: u32,
        /// Flags.
        flags: u32,
    },
    /// Resource ids exhausted.
    #[error("no free resource id")]
    NoResourceIds,
    /// An unknown resource id.
    #[error("{0} does not exist")]
    UnknownResource(ResourceId),
    /// Creating the executor failed.
    #[error("creating the executor failed")]
    Executor(#[source] ExecError),
    /// A context operation failed.
    #[error("context operation failed")]
    Context(#[from] ContextError),
    /// A sync operation failed.
    #[error("sync operation failed")]
    Sync(#[from] SyncError),
    /// Sending an fd failed.
    #[error("fd passing failed")]
    Fd(#[from] FdError),
}

/// Small, reused resource ids: Mesa indexes a sparse array by res_id.
#[derive(Debug)]
struct ResourceIds {
    free: std::collections::BTreeSet<u32>,
    next: u32,
    max: usize,
}

impl ResourceIds {
    fn new(max: usize) -> Self {
        Self {
            free: std::collections::BTreeSet::new(),
            next: 1,
            max,
        }
    }

    fn alloc(&mut self) -> Option<ResourceId> {
        if let Some(id) = self.free.pop_first() {
            return Some(ResourceId(id));
        }
        if self.next as usize > self.max {
            return None;
        }
        let id = self.next;
        self.next += 1;
        Some(ResourceId(id))
    }

    fn release(&mut self, id: ResourceId) {
        if id.0 + 1 == self.next {
            self.next -= 1;
            while self.next > 1 && self.free.remove(&(self.next - 1)) {
                self.next -= 1;
            }
        } else {
            self.free.insert(id.0);
        }
    }
}

pub(crate) struct Connection {
    stream: UnixStream,
    server: Arc<ServerShared>,
    conn_id: u64,
    name: Option<String>,
    context: Option<Context>,
    res_ids: ResourceIds,
    /// Shared with the context's retire thread, which signals host-queue fences.
    syncs: Arc<Mutex<SyncTable>>,
    /// Until CONTEXT_INIT: when the handshake must be done.
    handshake_deadline: Option<Instant>,
    /// While a message is being read: when it must be complete.
    message_deadline: Option<Instant>,
    /// The read timeout last set on the socket.
    read_timeout: Option<Duration>,
}

enum Flow {
    Continue,
    Done,
}

impl Connection {
    pub(crate) fn new(stream: UnixStream, server: Arc<ServerShared>, conn_id: u64) -> Self {
        let limits = server.config.context.limits;
        let max_syncs = server.config.max_syncs;
        Self {
            stream,
            conn_id,
            name: None,
            context: None,
            res_ids: ResourceIds::new(limits.max_resources),
            syncs: Arc::new(Mutex::new(SyncTable::new(max_syncs))),
            // Overflow (an absurd timeout) means no deadline.
            handshake_deadline: Instant::now().checked_add(server.config.handshake_timeout),
            message_deadline: None,
            read_timeout: None,
            server,
        }
    }

    pub(crate) fn label(&self) -> String {
        match &self.context {
            Some(ctx) => self.label_for(ctx.id()),
            None => format!(
                "{}client '{}' (conn {})",
                self.vm_prefix(),
                self.name.as_deref().unwrap_or("?"),
                self.conn_id
            ),
        }
    }

    /// `VM <name> ` when the socket belongs to a configured VM.
    fn vm_prefix(&self) -> String {
        self.server
            .config
            .vm
            .as_ref()
            .map_or_else(String::new, |vm| format!("VM {vm} "))
    }

    /// [`Self::label`] once the context `id` exists.
    fn label_for(&self, id: ContextId) -> String {
        let name = self.name.as_deref().unwrap_or("?");
        format!(
            "{}client '{name}' (conn {}, {id})",
            self.vm_prefix(),
            self.conn_id
        )
    }

    pub(crate) fn context_failed(&self) -> bool {
        self.context.as_ref().is_some_and(Context::is_fatal)
    }

    /// Serves messages until the client hangs up (Ok) or misbehaves (Err).
    fn syncs(&self) -> std::sync::MutexGuard<'_, SyncTable> {
        self.syncs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn run(&mut self) -> Result<(), ConnError> {
        // A client that stops reading must not pin this thread in a write.
        self.stream
            .set_write_timeout(Some(self.server.config.reply_timeout))?;
        loop {
            let Some((len, command)) = self.read_header()? else {
                return Ok(());
            };
            if self.name.is_none() && command != cmd::CREATE_RENDERER {
                return Err(ConnError::NotCreateRenderer(command));
            }
            if command == cmd::CREATE_RENDERER {
                self.create_renderer(len)?;
                continue;
            }
            let max = self.server.config.max_message_bytes;
            let bytes =
                (len as usize)
                    .checked_mul(4)
                    .filter(|&b| b <= max)
                    .ok_or(ConnError::TooLarge {
                        cmd: command,
                        len,
                        max,
                    })?;
            let mut payload = vec![0u8; bytes];
            self.read_body(&mut payload)?;
            match self.handle(Payload::new(command, payload))? {
                Flow::Continue => {}
                Flow::Done => return Ok(()),
            }
        }
    }

    /// Reads `[LEN, CMD]`; `None` on a clean hang-up at a message boundary. Between
    /// messages a handshaken client may idle as long as it likes; the message
    /// deadline starts with its first byte.
    fn read_header(&mut self) -> Result<Option<(u32, u32)>, ConnError> {
        let mut header = [0u8; 8];
        let mut got = 0;
        self.message_deadline = None;
        while got < header.len() {
            match self.read_timed(&mut header[got..])? {
                0 if got == 0 => return Ok(None),
                0 => return Err(std::io::Error::from(ErrorKind::UnexpectedEof).into()),
                n => got += n,
            }
            if self.message_deadline.is_none() {
                self.message_deadline =
                    Instant::now().checked_add(self.server.config.message_timeout);
            }
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let command = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        Ok(Some((len, command)))
    }

    /// Fills `buf` with the rest of the current message, within its deadline.
    fn read_body(&mut self, mut buf: &mut [u8]) -> Result<(), ConnError> {
        while !buf.is_empty() {
            match self.read_timed(buf)? {
                0 => return Err(std::io::Error::from(ErrorKind::UnexpectedEof).into()),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    /// One `read` bounded by the earlier of the handshake and message deadlines
    /// (unbounded when neither applies); `Ok(0)` is end of stream.
    fn read_timed(&mut self, buf: &mut [u8]) -> Result<usize, ConnError> {
        let config = &self.server.config;
        let (deadline, timeout_error) = match (self.handshake_deadline, self.message_deadline) {
            (Some(h), Some(m)) if m < h => {
                (Some(m), ConnError::MessageTimeout(config.message_timeout))
            }
            (Some(h), _) => (
                Some(h),
                ConnError::HandshakeTimeout(config.handshake_timeout),
            ),
            (None, Some(m)) => (Some(m), ConnError::MessageTimeout(config.message_timeout)),
            (None, None) => (None, ConnError::MessageTimeout(config.message_timeout)),
        };
        loop {
            let timeout = match deadline {
                // A zero timeout means "none" to the kernel: round up to 1 ms.
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left.max(Duration::from_millis(1))),
                    _ => return Err(timeout_error),
                },
                None => None,
            };
            if timeout != self.read_timeout {
                self.stream.set_read_timeout(timeout)?;
                self.read_timeout = timeout;
            }
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn reply(&mut self, command: u32, words: &[u32]) -> Result<(), ConnError> {
        match self
            .stream
            .write_all(&protocol::encode_reply(command, words))
        {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(ConnError::ReplyTimeout(self.server.config.reply_timeout))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends an fd after a reply, within the reply timeout.
    fn send_fd(&self, fd: &impl std::os::fd::AsFd) -> Result<(), ConnError> {
        send_fd(&self.stream, fd).map_err(|e| match e {
            FdError::Send(io)
                if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                ConnError::ReplyTimeout(self.server.config.reply_timeout)
            }
            other => other.into(),
        })
    }

    fn create_renderer(&mut self, len: u32) -> Result<(), ConnError> {
        if self.name.is_some() {
            return Err(ConnError::RendererTwice);
        }
        if len == 0 || len > 4096 {
            return Err(ConnError::BadNameLen(len));
        }
        let mut name = vec![0u8; len as usize];
        self.read_body(&mut name)?;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let name: String = String::from_utf8_lossy(&name[..end])
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(64)
            .collect();
        log::debug!("vtest: conn {} is '{name}'", self.conn_id);
        self.name = Some(name);
        Ok(())
    }

    fn context(&mut self, command: u32) -> Result<&mut Context, ConnError> {
        self.context.as_mut().ok_or(ConnError::NoContext(command))
    }

    fn handle(&mut self, p: Payload) -> Result<Flow, ConnError> {
        match p.command() {
            cmd::PING_PROTOCOL_VERSION => self.reply(cmd::PING_PROTOCOL_VERSION, &[])?,
            cmd::RESOURCE_BUSY_WAIT => {
                p.require(2)?;
                // Nothing this server hands out is ever busy.
                self.reply(cmd::RESOURCE_BUSY_WAIT, &[0])?;
            }
            cmd::PROTOCOL_VERSION => {
                let client = p.dword(0)?;
                self.reply(
                    cmd::PROTOCOL_VERSION,
                    &[client.min(protocol::PROTOCOL_VERSION)],
                )?;
            }
            cmd::GET_PARAM => {
                let reply = match p.dword(0)? {
                    protocol::PARAM_MAX_TIMELINE_COUNT => [1, protocol::MAX_TIMELINE_COUNT],
                    _ => [0, 0],
                };
                self.reply(cmd::GET_PARAM, &reply)?;
            }
            cmd::GET_CAPSET => {
                let (id, version) = (CapsetId(p.dword(0)?), p.dword(1)?);
                if id == CapsetId::VENUS && version == 0 {
                    let mut words = vec![1u32];
                    words.extend(
                        self.server
                            .capset
                            .chunks_exact(4)
                            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                    self.reply(cmd::GET_CAPSET, &words)?;
                } else {
                    self.reply(cmd::GET_CAPSET, &[0])?;
                }
            }
            cmd::CONTEXT_INIT => self.context_init(CapsetId(p.dword(0)?))?,
            cmd::RESOURCE_CREATE_BLOB => self.create_blob(&p)?,
            cmd::RESOURCE_UNREF => {
                let id = ResourceId(p.dword(0)?);
                self.context(cmd::RESOURCE_UNREF)?
                    .destroy_resource(id)
                    .map_err(|_| ConnError::UnknownResource(id))?;
                self.res_ids.release(id);
            }
            cmd::SUBMIT_CMD2 => self.submit_cmd2(&p)?,
            cmd::SYNC_CREATE => {
                let id = self.syncs().create(p.qword(0)?)?;
                self.reply(cmd::SYNC_CREATE, &[id.0])?;
            }
            cmd::SYNC_UNREF => self.syncs().unref(SyncId(p.dword(0)?))?,
            cmd::SYNC_READ => {
                let value = self.syncs().read(SyncId(p.dword(0)?))?;
                self.reply(cmd::SYNC_READ, &[crate::lo32(value), crate::hi32(value)])?;
            }
            cmd::SYNC_WRITE => self.syncs().write(SyncId(p.dword(0)?), p.qword(1)?)?,
            cmd::SYNC_WAIT => {
                let wait = SyncWait::parse(&p)?;
                let vm = self.context.as_ref().map(Context::fd_budget);
                let budget = match &vm {
                    None => WaitBudget::NoContext,
                    Some(None) => WaitBudget::Unlimited,
                    Some(Some(vm)) => WaitBudget::Vm(vm),
                };
                let fd = self.syncs().wait(
                    wait.flags & protocol::SYNC_WAIT_FLAG_ANY != 0,
                    wait.entries,
                    budget,
                )?;
                self.reply(cmd::SYNC_WAIT, &[])?;
                self.send_fd(&fd)?;
            }
            other => return Err(ConnError::UnknownCommand(other)),
        }
        if self.context_failed() {
            return Ok(Flow::Done);
        }
        Ok(Flow::Continue)
    }

    fn context_init(&mut self, capset: CapsetId) -> Result<(), ConnError> {
        if capset != CapsetId::VENUS {
            return Err(ConnError::BadCapset(capset));
        }
        if self.context.is_some() {
            // Same capset again is a no-op.
            return Ok(());
        }
        let id = ContextId(
            self.server
                .next_context
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        let executor = self
            .server
            .factory
            .create(id)
            .map_err(ConnError::Executor)?;
        let context = Context::new(id, self.server.config.context, executor);
        let server = Arc::clone(&self.server);
        let label = self.label_for(id);
        log::debug!("vtest: {label}: context created");
        let socket = self.stream.try_clone()?;
        context.set_fatal_hook(Box::new(move |_, reason| {
            server.warn.warn(format_args!(
                "vtest: {label}: context failed, dropping the connection: {reason}"
            ));
            // Wakes the connection thread (its read returns EOF) and shows the guest
            // a closed socket.
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }));
        if let Some(hook) = &self.server.on_context {
            hook(
                &context,
                self.name.as_deref().unwrap_or("?"),
                &self.label_for(id),
            );
        }
        self.server.contexts.register(&context);
        self.context = Some(context);
        // The handshake is done: from now on the client may idle between messages.
        self.handshake_deadline = None;
        Ok(())
    }

    fn create_blob(&mut self, p: &Payload) -> Result<(), ConnError> {
        let req = CreateBlob::parse(p)?;
        let known_flags = protocol::BLOB_FLAG_MAPPABLE
            | protocol::BLOB_FLAG_SHAREABLE
            | protocol::BLOB_FLAG_CROSS_DEVICE;
        if req.blob_type != protocol::BLOB_TYPE_HOST3D || req.flags & !known_flags != 0 {
            return Err(ConnError::BadBlob {
                blob_type: req.blob_type,
                flags: req.flags,
            });
        }
        self.context(cmd::RESOURCE_CREATE_BLOB)?;
        let id = self.res_ids.alloc().ok_or(ConnError::NoResourceIds)?;
        let created = match &self.context {
            Some(ctx) => ctx.create_blob(id, req.blob_id, req.size),
            None => return Err(ConnError::NoContext(cmd::RESOURCE_CREATE_BLOB)),
        };
        let resource = match created {
            Ok(res) => res,
            Err(e) => {
                self.res_ids.release(id);
                return self.refuse_blob(&req, e.into());
            }
        };
        if req.blob_id != BlobId::SHMEM {
            log::debug!("vtest: {id} exports {}", req.blob_id);
        }
        self.reply(cmd::RESOURCE_CREATE_BLOB, &[id.0])?;
        self.send_fd(resource.fd())?;
        Ok(())
    }

    /// A blob the context cannot create (a device-memory allocation the quota refused,
    /// which Mesa sent without waiting for its answer; a shared-memory limit). Mesa
    /// 25.0.7 has no way to take a refusal here: it asserts on the reply and, if the
    /// connection just closed, spins for ever re-reading it. So the context fails
    /// (FATAL on its rings, one log line with this cause) and the request is still
    /// answered, with an id and a placeholder memfd that holds no memory and cannot be
    /// mapped writable; the client's driver then stops at its next ring access or
    /// socket write instead of hanging.
    fn refuse_blob(&mut self, req: &CreateBlob, cause: ConnError) -> Result<(), ConnError> {
        let reason = format!(
            "RESOURCE_CREATE_BLOB of {} ({} bytes) failed: {}",
            req.blob_id,
            req.size,
            crate::error_chain(&cause)
        );
        let Ok(placeholder) = crate::sys::memfd::placeholder_memfd(req.size) else {
            return Err(cause);
        };
        // Answered before the context fails: failing it shuts the socket down.
        self.reply(cmd::RESOURCE_CREATE_BLOB, &[0])?;
        self.send_fd(&placeholder)?;
        match &self.context {
            Some(ctx) => ctx.set_fatal(&reason),
            None => return Err(cause),
        }
        Ok(())
    }

    fn submit_cmd2(&mut self, p: &Payload) -> Result<(), ConnError> {
        self.context(cmd::SUBMIT_CMD2)?;
        let batches = protocol::parse_submit_cmd2(p)?;
        let mut syncs = Vec::with_capacity(batches.len());
        for batch in &batches {
            let entries = protocol::batch_syncs(p, batch)?;
            self.syncs().check_ids(&entries)?;
            syncs.push(entries);
        }
        for (batch, entries) in batches.iter().zip(syncs) {
            if batch.cmd_size > 0 {
                let stream = p.dword_range(batch.cmd_offset, batch.cmd_size);
                self.context(cmd::SUBMIT_CMD2)?.submit(stream)?;
            }
            if entries.is_empty() {
                continue;
            }
            if batch.ring_idx.0 == 0 {
                // The CPU timeline: the batch has run.
                self.syncs().signal(&entries)?;
                continue;
            }
            // A queue timeline: the syncs move once the host queue bound to the ring
            // has retired everything submitted so far (at once if none is bound).
            let table = Arc::clone(&self.syncs);
            let done: FenceDone = Box::new(move || {
                table
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .signal_existing(&entries);
            });
            self.context(cmd::SUBMIT_CMD2)?
                .submit_fence(batch.ring_idx, done)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_are_small_and_reused() {
        let mut ids = ResourceIds::new(100);
        let a = ids.alloc().expect("id");
        let b = ids.alloc().expect("id");
        let c = ids.alloc().expect("id");
        assert_eq!((a, b, c), (ResourceId(1), ResourceId(2), ResourceId(3)));
        ids.release(b);
        assert_eq!(ids.alloc(), Some(ResourceId(2)));
        ids.release(c);
        ids.release(ResourceId(2));
        assert_eq!(ids.alloc(), Some(ResourceId(2)));
    }

    #[test]
    fn resource_ids_stop_at_the_limit() {
        let mut ids = ResourceIds::new(2);
        assert!(ids.alloc().is_some());
        assert!(ids.alloc().is_some());
        assert_eq!(ids.alloc(), None);
    }
}
