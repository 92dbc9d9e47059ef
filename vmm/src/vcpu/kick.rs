//! Getting a vCPU thread out of KVM_RUN: a real-time signal with an empty handler makes
//! KVM_RUN return EINTR. A kick that lands just before KVM_RUN is lost, so kick again until
//! the thread says it has finished, or until a deadline: a vCPU stuck in a device (waiting on
//! a host operation that does not end) must not keep nestor from exiting. A thread that
//! finishes is joined at once, not at the next kick.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// How long a kicked thread has before it is kicked again.
const KICK_INTERVAL: Duration = Duration::from_millis(2);

pub(crate) fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    register_signal_handler(kick_signal(), on_kick)
}

/// Kicks each thread until it ends, then joins it. `finished` gets the index (in `threads`)
/// of each thread that is done. Gives up at `deadline` and returns the names of the threads
/// still running, which are left to the process exit.
pub fn kick_until_finished(
    threads: Vec<JoinHandle<()>>,
    finished: &Receiver<usize>,
    deadline: Instant,
) -> Vec<String> {
    let mut running: Vec<Option<JoinHandle<()>>> = threads.into_iter().map(Some).collect();
    let mut left = running.len();
    while left > 0 {
        for thread in running.iter().flatten() {
            let _ = thread.kill(kick_signal());
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match finished.recv_timeout(KICK_INTERVAL.min(deadline - now)) {
            Ok(index) => {
                if let Some(thread) = running.get_mut(index).and_then(Option::take) {
                    let _ = thread.join();
                    left -= 1;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Nobody can say more: whatever has not finished will not say so.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut still_running = Vec::new();
    for thread in running.into_iter().flatten() {
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
        let (finished, done) = std::sync::mpsc::channel();
        let release = Arc::new(AtomicBool::new(false));
        let stuck = {
            let release = release.clone();
            let finished = finished.clone();
            std::thread::Builder::new()
                .name("vcpu-stuck".into())
                .spawn(move || {
                    // A kick interrupts the sleep; the thread carries on as a blocked one would.
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let _ = finished.send(1);
                })
                .unwrap()
        };
        let quick = std::thread::spawn(move || finished.send(0).unwrap());
        let asked = Instant::now();
        let left = kick_until_finished(
            vec![quick, stuck],
            &done,
            asked + Duration::from_millis(200),
        );
        assert_eq!(left, ["vcpu-stuck"]);
        assert!(asked.elapsed() < Duration::from_secs(10));
        release.store(true, Ordering::SeqCst);
    }

    #[test]
    fn a_finished_thread_is_joined_without_waiting_for_the_next_kick() {
        install_kick_handler().unwrap();
        let (finished, done) = std::sync::mpsc::channel();
        let threads = (0..4)
            .map(|i| {
                let finished = finished.clone();
                std::thread::spawn(move || finished.send(i).unwrap())
            })
            .collect();
        let asked = Instant::now();
        let left = kick_until_finished(threads, &done, asked + Duration::from_secs(5));
        assert!(left.is_empty());
        assert!(asked.elapsed() < Duration::from_secs(5));
    }
}
