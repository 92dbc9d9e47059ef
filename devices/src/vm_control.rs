//! How a device asks the VMM to end the VM (power-off, reset, the exit port).
//!
//! The first request wins: a guest that powers off and then writes the exit port exits
//! with the power-off status. The eventfd wakes the event loop, the flag stops vCPU loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExitReason {
    /// ACPI S5 from the guest.
    PowerOff,
    /// Reset through the i8042, 0xcf9 or the ACPI reset register.
    Reset,
    /// A byte written to the exit port.
    ExitPort(u8),
    /// Something went wrong that the guest did (triple fault, internal error).
    GuestFailure(String),
    /// Something went wrong in the VMM.
    VmmFailure(String),
    /// The user stopped the VM from the host (console escape).
    HostStop,
}

impl VmExitReason {
    /// The process exit status nestor reports for this reason.
    pub fn exit_status(&self) -> i32 {
        match self {
            VmExitReason::PowerOff | VmExitReason::Reset | VmExitReason::HostStop => 0,
            VmExitReason::ExitPort(status) => i32::from(*status),
            VmExitReason::GuestFailure(_) | VmExitReason::VmmFailure(_) => 1,
        }
    }
}

struct Inner {
    reason: Mutex<Option<VmExitReason>>,
    stopping: AtomicBool,
    wake: EventFd,
    started: Instant,
}

/// A cheap, cloneable handle shared by every device and thread of a VM.
#[derive(Clone)]
pub struct VmControl(Arc<Inner>);

impl VmControl {
    /// `started` is when nestor started: the boot timer reports times relative to it.
    pub fn new(started: Instant) -> std::io::Result<Self> {
        Ok(Self(Arc::new(Inner {
            reason: Mutex::new(None),
            stopping: AtomicBool::new(false),
            wake: EventFd::new(EFD_NONBLOCK)?,
            started,
        })))
    }

    /// Asks for the VM to end; only the first request is kept.
    pub fn request_exit(&self, reason: VmExitReason) {
        let mut slot = self.0.reason.lock().unwrap();
        if slot.is_none() {
            log::debug!("VM exit requested: {reason:?}");
            *slot = Some(reason);
            self.0.stopping.store(true, Ordering::SeqCst);
            let _ = self.0.wake.write(1);
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.0.stopping.load(Ordering::Relaxed)
    }

    pub fn exit_reason(&self) -> Option<VmExitReason> {
        self.0.reason.lock().unwrap().clone()
    }

    /// Readable once an exit was requested.
    pub fn wake_fd(&self) -> &EventFd {
        &self.0.wake
    }

    pub fn started(&self) -> Instant {
        self.0.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_exit_request_wins() {
        let control = VmControl::new(Instant::now()).unwrap();
        assert!(!control.is_stopping());
        control.request_exit(VmExitReason::PowerOff);
        control.request_exit(VmExitReason::ExitPort(7));
        assert!(control.is_stopping());
        assert_eq!(control.exit_reason(), Some(VmExitReason::PowerOff));
        assert_eq!(control.wake_fd().read().unwrap(), 1);
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(VmExitReason::ExitPort(42).exit_status(), 42);
        assert_eq!(VmExitReason::Reset.exit_status(), 0);
        assert_eq!(VmExitReason::GuestFailure("x".into()).exit_status(), 1);
    }
}
