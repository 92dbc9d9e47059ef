//! Pausing the vCPUs: while the gate is closed, each vCPU thread parks before its next
//! KVM_RUN. Whoever pauses kicks the threads out of the guest (a vCPU in KVM_RUN does not
//! look at the gate) and waits until every one of them has parked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use devices::VmControl;

/// How often a parked vCPU looks whether the VM is ending: a stop does not open the gate.
const PARKED_POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
pub struct PauseGate {
    /// Read on every exit, so a running VM takes no lock.
    closed: AtomicBool,
    parked: Mutex<usize>,
    changed: Condvar,
}

impl PauseGate {
    /// Closes the gate; false if it was already closed.
    pub fn close(&self) -> bool {
        let _parked = self.parked.lock().unwrap();
        !self.closed.swap(true, Ordering::SeqCst)
    }

    /// Opens the gate and wakes the parked vCPUs; false if it was already open.
    pub fn open(&self) -> bool {
        let _parked = self.parked.lock().unwrap();
        let was_closed = self.closed.swap(false, Ordering::SeqCst);
        self.changed.notify_all();
        was_closed
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// How many vCPUs are parked now.
    pub fn parked(&self) -> usize {
        *self.parked.lock().unwrap()
    }

    /// Waits up to `timeout` for `count` vCPUs to be parked.
    pub fn wait_parked(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut parked = self.parked.lock().unwrap();
        while *parked < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            parked = self.changed.wait_timeout(parked, left).unwrap().0;
        }
        true
    }

    /// Called by a vCPU thread before KVM_RUN: returns at once while the gate is open,
    /// else once it opens or the VM is ending.
    pub fn pass(&self, control: &VmControl) {
        if !self.is_closed() {
            return;
        }
        let mut parked = self.parked.lock().unwrap();
        *parked += 1;
        self.changed.notify_all();
        while self.is_closed() && !control.is_stopping() {
            parked = self.changed.wait_timeout(parked, PARKED_POLL).unwrap().0;
        }
        *parked -= 1;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_vcpu_parks_while_closed_and_goes_on_when_opened() {
        let gate = Arc::new(PauseGate::default());
        let control = VmControl::new(Instant::now()).unwrap();
        assert!(gate.close());
        assert!(!gate.close());
        let vcpu = {
            let gate = gate.clone();
            let control = control.clone();
            std::thread::spawn(move || gate.pass(&control))
        };
        assert!(gate.wait_parked(1, Duration::from_secs(10)));
        assert!(!vcpu.is_finished());
        assert!(gate.open());
        assert!(!gate.open());
        vcpu.join().unwrap();
        assert_eq!(gate.parked(), 0);
    }

    #[test]
    fn a_parked_vcpu_leaves_when_the_vm_ends() {
        let gate = Arc::new(PauseGate::default());
        let control = VmControl::new(Instant::now()).unwrap();
        gate.close();
        let vcpu = {
            let gate = gate.clone();
            let control = control.clone();
            std::thread::spawn(move || gate.pass(&control))
        };
        assert!(gate.wait_parked(1, Duration::from_secs(10)));
        control.request_exit(devices::VmExitReason::HostStop);
        vcpu.join().unwrap();
        assert!(gate.is_closed());
    }

    #[test]
    fn waiting_for_vcpus_that_never_park_times_out() {
        let gate = PauseGate::default();
        gate.close();
        assert!(!gate.wait_parked(1, Duration::from_millis(30)));
    }
}
