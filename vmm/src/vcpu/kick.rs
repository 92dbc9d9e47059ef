//! Getting a vCPU thread out of KVM_RUN: a real-time signal with an empty handler makes
//! KVM_RUN return EINTR. A kick that lands just before KVM_RUN is lost, so kick until the
//! thread has finished.

use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    register_signal_handler(kick_signal(), on_kick)
}

/// Kicks each thread until it ends, then joins it.
pub fn kick_until_finished(threads: Vec<JoinHandle<()>>) {
    for thread in threads {
        while !thread.is_finished() {
            let _ = thread.kill(kick_signal());
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = thread.join();
    }
}
