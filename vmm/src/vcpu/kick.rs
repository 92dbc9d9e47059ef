//! Getting a vCPU thread out of KVM_RUN: a real-time signal with an empty handler makes
//! KVM_RUN return EINTR. A kick that lands just before KVM_RUN is lost, so kick until the
//! thread has finished, or until a deadline: a vCPU stuck in a device (waiting on a host
//! operation that does not end) must not keep nestor from exiting.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    register_signal_handler(kick_signal(), on_kick)
}

/// Kicks each thread until it ends, then joins it; gives up at `deadline` and returns the
/// names of the threads still running, which are left to the process exit.
pub fn kick_until_finished(threads: Vec<JoinHandle<()>>, deadline: Instant) -> Vec<String> {
    let mut still_running = Vec::new();
    for thread in threads {
        while !thread.is_finished() && Instant::now() < deadline {
            let _ = thread.kill(kick_signal());
            std::thread::sleep(Duration::from_millis(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            still_running.push(thread.thread().name().unwrap_or("a vCPU").to_owned());
        }
    }
    still_running
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_thread_that_does_not_stop_is_left_at_the_deadline() {
        install_kick_handler().unwrap();
        let release = Arc::new(AtomicBool::new(false));
        let stuck = {
            let release = release.clone();
            std::thread::Builder::new()
                .name("vcpu-stuck".into())
                .spawn(move || {
                    // A kick interrupts the sleep; the thread carries on as a blocked one would.
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
                .unwrap()
        };
        let done = std::thread::spawn(|| {});
        let asked = Instant::now();
        let left = kick_until_finished(vec![done, stuck], asked + Duration::from_millis(200));
        assert_eq!(left, ["vcpu-stuck"]);
        assert!(asked.elapsed() < Duration::from_secs(10));
        release.store(true, Ordering::SeqCst);
    }
}
