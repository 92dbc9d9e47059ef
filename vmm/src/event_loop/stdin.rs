//! Terminal input for the guest's serial console. Raw mode while the VM runs; Ctrl-A x quits.

use std::io::{IsTerminal, Read};
use std::sync::{Arc, Mutex};

use devices::legacy::SerialDevice;
use devices::{VmControl, VmExitReason};
use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::terminal::Terminal;

const CTRL_A: u8 = 0x01;

pub struct StdinForwarder {
    serial: Arc<Mutex<SerialDevice>>,
    control: VmControl,
    escape_pending: bool,
}

impl StdinForwarder {
    /// Only when stdin is a terminal: piped input would reach the guest before it can read.
    pub fn for_terminal(serial: Arc<Mutex<SerialDevice>>, control: VmControl) -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        if let Err(e) = stdin.lock().set_raw_mode() {
            log::warn!("cannot put the terminal in raw mode: {e}");
        }
        Some(Self {
            serial,
            control,
            escape_pending: false,
        })
    }

    /// Strips the Ctrl-A escape; returns false when the user asked to quit.
    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &byte in input {
            if self.escape_pending {
                self.escape_pending = false;
                match byte {
                    b'x' | b'X' => return false,
                    CTRL_A => out.push(CTRL_A),
                    other => out.extend([CTRL_A, other]),
                }
            } else if byte == CTRL_A {
                self.escape_pending = true;
            } else {
                out.push(byte);
            }
        }
        true
    }
}

impl Drop for StdinForwarder {
    fn drop(&mut self) {
        let _ = std::io::stdin().lock().set_canon_mode();
    }
}

impl MutEventSubscriber for StdinForwarder {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let room = self.serial.lock().unwrap().input_capacity();
        let mut buf = [0u8; 64];
        let want = room.clamp(1, buf.len());
        match std::io::stdin().lock().read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                let _ = ops.remove(events);
            }
            Ok(n) => {
                let mut bytes = Vec::with_capacity(n);
                if !self.filter(&buf[..n], &mut bytes) {
                    crate::logging::stderr_line(format_args!(
                        "\r\nnestor: stopped from the console (Ctrl-A x)\r"
                    ));
                    self.control.request_exit(VmExitReason::HostStop);
                    return;
                }
                self.serial.lock().unwrap().enqueue_input(&bytes);
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&std::io::stdin(), EventSet::IN)) {
            log::warn!("cannot watch stdin: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use vmm_sys_util::eventfd::EventFd;

    fn forwarder() -> StdinForwarder {
        StdinForwarder {
            serial: Arc::new(Mutex::new(SerialDevice::new(
                EventFd::new(0).unwrap(),
                Box::new(std::io::sink()),
            ))),
            control: VmControl::new(Instant::now()).unwrap(),
            escape_pending: false,
        }
    }

    #[test]
    fn ctrl_a_x_quits_and_ctrl_a_ctrl_a_sends_one_ctrl_a() {
        let mut f = forwarder();
        let mut out = Vec::new();
        assert!(f.filter(b"ab\x01\x01c\x01z", &mut out));
        assert_eq!(out, b"ab\x01c\x01z");
        out.clear();
        assert!(f.filter(b"q\x01", &mut out));
        assert!(!f.filter(b"x", &mut out));
        assert_eq!(out, b"q");
    }
}
