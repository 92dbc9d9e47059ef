//! The VMM thread's event loop: host input for the guest console, and the VM's end.

mod stdin;
mod vcpu_kicker;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::legacy::SerialDevice;
use devices::{VmControl, VmExitReason};
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;

use crate::vm::VmmError;
pub use stdin::StdinForwarder;
pub use vcpu_kicker::{KickRequest, VcpuKicker};

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Wakes the loop when a device or vCPU asks the VM to end.
struct ExitWatcher(VmControl);

impl MutEventSubscriber for ExitWatcher {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.wake_fd().read();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.0.wake_fd(), EventSet::IN)) {
            log::error!("cannot watch the VM exit eventfd: {e}");
        }
    }
}

pub struct EventLoop {
    manager: EventManager<Subscriber>,
    control: VmControl,
}

impl EventLoop {
    pub fn new(control: VmControl) -> Result<Self, VmmError> {
        let mut manager =
            EventManager::<Subscriber>::new().map_err(|e| VmmError::EventLoop(e.to_string()))?;
        manager.add_subscriber(Arc::new(Mutex::new(ExitWatcher(control.clone()))));
        Ok(Self { manager, control })
    }

    pub fn add_serial_input(&mut self, serial: Arc<Mutex<SerialDevice>>) {
        if let Some(forwarder) = StdinForwarder::for_terminal(serial, self.control.clone()) {
            self.manager.add_subscriber(Arc::new(Mutex::new(forwarder)));
        }
    }

    pub fn add_vcpu_kicker(&mut self, kicker: VcpuKicker) {
        self.manager.add_subscriber(Arc::new(Mutex::new(kicker)));
    }

    /// Runs until the VM ends or `timeout` passes.
    pub fn run(&mut self, timeout: Option<Duration>) -> Result<(), VmmError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        while !self.control.is_stopping() {
            let wait_ms = match deadline {
                None => -1,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.control
                            .request_exit(VmExitReason::GuestFailure(format!(
                                "the guest was still running after the {} s --timeout",
                                timeout.unwrap_or_default().as_secs()
                            )));
                        break;
                    }
                    left.as_millis().clamp(1, i32::MAX as u128) as i32
                }
            };
            match self.manager.run_with_timeout(wait_ms) {
                Ok(_) => {}
                Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EINTR => {}
                Err(e) => return Err(VmmError::EventLoop(e.to_string())),
            }
        }
        Ok(())
    }
}
