//! The worker side of a vhost-user (virtio-gpu) context (`SERVE_GPU`): the daemon's
//! context operations ([`super::ops`]) drive a [`CoreBackend`] holding this worker's
//! one context, exactly as the daemon would run it in-process; what the backend
//! reports later (finished submissions, fences) goes back as events.

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::ops::{self, Event, Request};
use super::protocol::{self, Msg};
use super::WorkerError;
use crate::capset::VenusCapset;
use crate::renderer::Context;
use crate::virtio_gpu::{CoreBackend, FenceSignals, FenceStatus, RenderBackend, SubmitStatus};
use crate::vtest::VtestConfig;

/// Largest command stream accepted from the daemon.
const MAX_STREAM: usize = 256 << 20;
/// How long the context's teardown may take once the daemon closed the socket
/// before the worker exits anyway (the kernel frees the rest).
const TEARDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Serves one virtio-gpu context on `ops` until the daemon closes it.
pub(super) fn serve_gpu(
    config: VtestConfig,
    capset: &VenusCapset,
    ops: OwnedFd,
    control: OwnedFd,
    gate: Option<Arc<crate::qos::SubmitGate>>,
    account: Option<OwnedFd>,
) -> Result<i32, WorkerError> {
    let ops = Arc::new(ops);
    let control = Arc::new(control);
    // Reports leave on a thread of their own, woken by the backend's notifier.
    let (wake, woken) = mpsc::channel::<()>();
    let signals = FenceSignals::new(Arc::new(move || {
        let _ = wake.send(());
    }));
    {
        let (signals, ops) = (signals.clone(), Arc::clone(&ops));
        std::thread::Builder::new()
            .name("vgpu-reports".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    for (timeline, fence) in signals.take() {
                        let _ = ops::send_event(&*ops, &Event::FenceDone { timeline, fence });
                    }
                    for (ticket, result) in signals.take_submitted() {
                        let result = result.map_err(|e| crate::error_chain(&e).to_string());
                        let _ = ops::send_event(&*ops, &Event::Submitted { ticket, result });
                    }
                }
            })
            .map_err(WorkerError::Control)?;
    }
    let vm = config
        .vm
        .as_ref()
        .map_or_else(|| "vm".to_owned(), ToString::to_string);
    let hook_control = Arc::clone(&control);
    let hook = Box::new(move |ctx: &Context| {
        let comm: String = format!("w:gpu-{}", ctx.id().0).chars().take(15).collect();
        if let Ok(comm) = std::ffi::CString::new(comm) {
            let _ = rustix::thread::set_name(&comm);
        }
        let label = ctx.id().to_string();
        let _ = protocol::send(&*hook_control, &Msg::Label(label));
        ctx.set_ring_hook(super::child::ring_hook(&hook_control));
    });
    let fallback = crate::ids::ContextId(1);
    let factory = Arc::new(super::child::factory(&config, fallback, gate, account));
    let mut backend = CoreBackend::new(capset, factory, config.context, signals)
        .with_vm(vm)
        .with_context_hook(hook);
    let send = |ev: &Event| ops::send_event(&*ops, ev);
    while let Some(req) = ops::recv_request(&*ops, MAX_STREAM)? {
        match req {
            Request::Create { ctx, capset, name } => {
                let r = backend
                    .create_context(ctx, capset, &name)
                    .map_err(|e| crate::error_chain(&e).to_string());
                send(&Event::Created(r))?;
            }
            Request::Submit { ctx, ticket, cmds } => match backend.submit(ctx, ticket, cmds) {
                Ok(SubmitStatus::Queued) => {}
                Ok(SubmitStatus::Done) => send(&Event::Submitted {
                    ticket,
                    result: Ok(()),
                })?,
                Err(e) => send(&Event::Submitted {
                    ticket,
                    result: Err(crate::error_chain(&e).to_string()),
                })?,
            },
            Request::Blob {
                ctx,
                res,
                blob,
                size,
            } => match backend.create_blob(ctx, res, blob, size) {
                Ok(mem) => {
                    let fd = mem
                        .fd()
                        .try_clone_to_owned()
                        .map_err(WorkerError::Control)?;
                    send(&Event::BlobMade {
                        res,
                        size: mem.size(),
                        fd,
                    })?;
                }
                Err(e) => send(&Event::BlobFailed {
                    res,
                    reason: crate::error_chain(&e).to_string(),
                })?,
            },
            Request::Attach {
                ctx,
                res,
                blob,
                size,
                fd,
            } => {
                let result = crate::renderer::Resource::import(blob, size, fd)
                    .map_err(|e| crate::error_chain(&e).to_string())
                    .and_then(|r| {
                        backend
                            .import_blob(ctx, res, Arc::new(r))
                            .map_err(|e| crate::error_chain(&e).to_string())
                    });
                send(&Event::Attached { res, result })?;
            }
            Request::DestroyBlob { ctx, res } => backend.destroy_blob(ctx, res),
            Request::Detach { res, ctx } => backend.detach_blob(res, ctx),
            Request::Fence {
                ctx,
                timeline,
                fence,
            } => {
                if backend.create_fence(ctx, timeline, fence) == FenceStatus::Signalled {
                    send(&Event::FenceDone { timeline, fence })?;
                }
            }
        }
    }
    // The daemon closed the context: tear it down, within a limit.
    let (done, finished) = mpsc::channel::<()>();
    let teardown = std::thread::Builder::new()
        .name("vgpu-teardown".into())
        .spawn(move || {
            drop(backend);
            let _ = done.send(());
        });
    if teardown.is_ok() && finished.recv_timeout(TEARDOWN_LIMIT).is_err() {
        log::warn!("worker: the context did not tear down within {TEARDOWN_LIMIT:?}; exiting");
    }
    Ok(0)
}
