//! The relay thread's loop, and the guest-answer path the virtio-iommu calls.
//!
//! The thread waits on the back-end's two fault sources and on the next answer deadline.
//! Page requests go to the guest through a [`GuestFaultSink`] (the virtio-iommu's event
//! queue); unrecoverable events likewise. A guest's answer (PAGE_RESP) does not come
//! through the thread: the vCPU that carries it looks the group up and answers the host
//! itself, so a page request costs the guest no exit beyond its request.
//!
//! Nothing here blocks under the groups' lock: host calls happen after it is released.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::groups::{
    host_code, AnswerError, GroupKey, GroupLimits, PageRequestGroups, RecordAction,
};
use super::GroupCounters;
use crate::host_iommu::nested::{NestedEvent, NestedHostIommu, PageRequest, PageResponseCode};
use crate::virtio::ThreadSetupHook;

/// Records taken from a source per wake-up before the loop looks at the others.
const BATCH: usize = 64;

const TOKEN_STOP: u64 = 0;
const TOKEN_EVENTS: u64 = 1;
const TOKEN_PAGE_REQUESTS: u64 = 2;

/// Where the relay hands records for the guest: the virtio-iommu's event queue.
pub trait GuestFaultSink: Send + Sync {
    /// Whether `stream` is an endpoint in nested mode, whose page requests the guest answers.
    fn routes(&self, stream: u32) -> bool;
    /// Queues a page-request record; false if the event queue cannot take it.
    fn page_request(&self, request: &PageRequest) -> bool;
    /// Queues an unrecoverable event (with the events lost before it, if any).
    fn event(&self, event: &NestedEvent);
}

/// What the relay thread and the guest-answer path share.
pub struct FaultRelayState {
    host: Arc<dyn NestedHostIommu>,
    groups: Mutex<PageRequestGroups>,
    /// Host refusals of an answer, logged once.
    host_refused_logged: AtomicBool,
}

impl FaultRelayState {
    pub fn new(host: Arc<dyn NestedHostIommu>, limits: GroupLimits) -> Arc<Self> {
        Arc::new(Self {
            host,
            groups: Mutex::new(PageRequestGroups::new(limits)),
            host_refused_logged: AtomicBool::new(false),
        })
    }

    fn groups(&self) -> MutexGuard<'_, PageRequestGroups> {
        // Every update is a single map operation: a panic cannot leave it half done.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn counters(&self) -> GroupCounters {
        self.groups().counters()
    }

    /// The guest's PAGE_RESP for `key`: answers the host once, with SUCCESS only if the
    /// guest said so.
    pub fn answer(&self, key: GroupKey, success: bool) -> Result<(), AnswerError> {
        let cookie = self.groups().on_answer(key)?;
        self.respond(cookie, host_code(success));
        Ok(())
    }

    /// The endpoint's table was replaced or removed, or it left nested mode: the host has
    /// failed its groups.
    pub fn forget_stream(&self, stream: u32) {
        self.groups().forget_stream(stream);
    }

    /// The virtio-iommu or the VM was reset.
    pub fn forget_all(&self) {
        self.groups().forget_all();
    }

    fn respond(&self, cookie: u32, code: PageResponseCode) {
        if let Err(e) = self.host.page_response(cookie, code) {
            // The host failed the group on its own first (a detach raced the answer).
            if !self.host_refused_logged.swap(true, Ordering::Relaxed) {
                log::info!("fault relay: the host took no page response for cookie {cookie}: {e}");
            }
        }
    }

    /// Reads and routes one batch of page requests.
    pub fn relay_page_requests(&self, sink: &dyn GuestFaultSink) -> io::Result<()> {
        let requests = self
            .host
            .read_page_requests(BATCH)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let now = Instant::now();
        for request in &requests {
            // Asked before the groups' lock is taken: the guest side holds its own locks
            // while it tells the relay to forget a stream.
            let routed = sink.routes(request.stream);
            let action = self.groups().on_record(request, routed, now);
            match action {
                RecordAction::Deliver => {
                    if !sink.page_request(request) {
                        let failed = self.groups().undeliverable(request);
                        if let Some(cookie) = failed {
                            self.respond(cookie, PageResponseCode::Invalid);
                        }
                    }
                }
                RecordAction::Drop => {}
                RecordAction::Fail { cookie } => self.respond(cookie, PageResponseCode::Invalid),
            }
        }
        Ok(())
    }

    /// Reads and forwards one batch of unrecoverable events.
    pub fn relay_events(&self, sink: &dyn GuestFaultSink) -> io::Result<()> {
        let events = self
            .host
            .read_events(BATCH)
            .map_err(|e| io::Error::other(e.to_string()))?;
        for event in &events {
            sink.event(event);
        }
        Ok(())
    }

    /// Fails the groups the guest did not answer in time.
    pub fn expire(&self, now: Instant) {
        let expired = self.groups().expire(now);
        if !expired.is_empty() {
            log::warn!(
                "fault relay: the guest left {} page request group(s) unanswered past the deadline; the device was told they failed",
                expired.len()
            );
        }
        for cookie in expired {
            self.respond(cookie, PageResponseCode::Invalid);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.groups().next_deadline()
    }
}

/// The running relay thread. Dropping it stops the thread and waits for it.
pub struct FaultRelay {
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl FaultRelay {
    /// Starts the thread; it runs `setup` (its seccomp filter) before it touches anything.
    pub fn start(
        state: Arc<FaultRelayState>,
        sink: Arc<dyn GuestFaultSink>,
        setup: ThreadSetupHook,
    ) -> io::Result<Self> {
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fault-relay".into())
            .spawn(move || {
                // The epoll set is built before the filter goes on, so the filter need not
                // allow creating or changing one.
                let result = watch(&state, &thread_stop).and_then(|epoll| {
                    setup();
                    run(&state, sink.as_ref(), &epoll)
                });
                if let Err(e) = result {
                    log::error!("fault relay stopped: {e}");
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The epoll set: the stop eventfd and the back-end's two fault sources.
fn watch(state: &FaultRelayState, stop: &EventFd) -> io::Result<Epoll> {
    let epoll = Epoll::new()?;
    let readable = |token| EpollEvent::new(EventSet::IN, token);
    let notifiers = state.host.fault_notifiers();
    epoll.ctl(
        ControlOperation::Add,
        stop.as_raw_fd(),
        readable(TOKEN_STOP),
    )?;
    epoll.ctl(
        ControlOperation::Add,
        notifiers.events.as_raw_fd(),
        readable(TOKEN_EVENTS),
    )?;
    epoll.ctl(
        ControlOperation::Add,
        notifiers.page_requests.as_raw_fd(),
        readable(TOKEN_PAGE_REQUESTS),
    )?;
    Ok(epoll)
}

fn run(state: &FaultRelayState, sink: &dyn GuestFaultSink, epoll: &Epoll) -> io::Result<()> {
    let mut events = [EpollEvent::default(); 3];
    loop {
        let timeout = state.next_deadline().map_or(-1, |deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up, so a wake-up never comes just before the deadline.
            i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX)
        });
        let n = match epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for event in &events[..n] {
            match event.data() {
                TOKEN_STOP => return Ok(()),
                TOKEN_EVENTS => state.relay_events(sink)?,
                TOKEN_PAGE_REQUESTS => state.relay_page_requests(sink)?,
                _ => {}
            }
        }
        state.expire(Instant::now());
    }
}
