//! Kicks on request: a thread that wants the vCPUs out of KVM_RUN (to pause them) asks the
//! VMM thread, the one thread whose filter lets it signal them.

use std::sync::Arc;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::vcpu::kick_signal;

/// The handle other threads use to ask for a kick.
#[derive(Clone)]
pub struct KickRequest(Arc<EventFd>);

impl KickRequest {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self(Arc::new(EventFd::new(EFD_NONBLOCK)?)))
    }

    /// Every vCPU thread gets one kick soon after.
    pub fn kick(&self) {
        let _ = self.0.write(1);
    }
}

/// The event loop's side: signals each vCPU thread once per request.
pub struct VcpuKicker {
    request: KickRequest,
    threads: Vec<libc::pthread_t>,
}

impl VcpuKicker {
    /// `threads` must stay unjoined while the event loop runs.
    pub fn new(request: KickRequest, threads: Vec<libc::pthread_t>) -> Self {
        Self { request, threads }
    }
}

impl MutEventSubscriber for VcpuKicker {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.request.0.read();
        for &thread in &self.threads {
            // SAFETY: the vCPU threads are joined only after the event loop has ended, so
            // each id names a live (or finished, not yet joined) thread; the kick signal
            // has a handler that does nothing.
            unsafe { libc::pthread_kill(thread, kick_signal()) };
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&*self.request.0, EventSet::IN)) {
            log::error!("cannot watch the vCPU kick requests: {e}");
        }
    }
}
