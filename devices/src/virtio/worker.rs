//! The device worker thread: waits on its queues' eventfds (and any input fd) and a kill
//! eventfd, and hands each wake-up to the device's handler.
//!
//! The epoll set is built before the thread starts, so the thread itself only runs the
//! setup hook and then epoll_wait, eventfd reads, and whatever the handler does.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::WorkerSpec;
use super::worker_thread::JobHandle;

const KILL_TOKEN: u64 = u64::MAX;
const EXTRA_TOKEN_BASE: u64 = 1 << 32;

/// What a device does when woken.
pub trait QueueHandler: Send + 'static {
    /// Queue `index` (position in the worker's queue list) was notified.
    fn process_queue(&mut self, index: usize);
    /// Extra fd `index` is readable; return false to stop watching it (EOF, error).
    fn process_input(&mut self, _index: usize) -> bool {
        false
    }
}

/// A running worker; stopping (or dropping) it ends the thread and waits for it.
pub struct Worker {
    kill: EventFd,
    thread: Option<JobHandle>,
}

impl Worker {
    /// Starts `handler` on a thread named `spec.name`, woken by `queue_fds` and `input_fds`.
    /// Every queue is processed once at start, in case the driver notified early.
    pub fn spawn<H: QueueHandler>(
        spec: &WorkerSpec,
        queue_fds: Vec<EventFd>,
        input_fds: Vec<RawFd>,
        mut handler: H,
    ) -> io::Result<Worker> {
        let kill = EventFd::new(EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        let readable = |token| EpollEvent::new(EventSet::IN, token);
        epoll.ctl(
            ControlOperation::Add,
            kill.as_raw_fd(),
            readable(KILL_TOKEN),
        )?;
        for (i, fd) in queue_fds.iter().enumerate() {
            epoll.ctl(ControlOperation::Add, fd.as_raw_fd(), readable(i as u64))?;
        }
        for (i, fd) in input_fds.iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                *fd,
                readable(EXTRA_TOKEN_BASE + i as u64),
            )?;
        }
        let thread_kill = kill.try_clone()?;
        let thread = spec.thread.run(move || {
            for i in 0..queue_fds.len() {
                handler.process_queue(i);
            }
            run(&epoll, &thread_kill, &queue_fds, &input_fds, &mut handler);
        })?;
        Ok(Worker {
            kill,
            thread: Some(thread),
        })
    }

    /// Ends the thread and waits for it.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.kill.write(1);
            if thread.join().is_err() {
                log::error!("a device worker thread panicked");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<H: QueueHandler>(
    epoll: &Epoll,
    kill: &EventFd,
    queue_fds: &[EventFd],
    input_fds: &[RawFd],
    handler: &mut H,
) {
    let mut events = vec![EpollEvent::default(); queue_fds.len() + input_fds.len() + 1];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("device worker: epoll_wait failed: {e}");
                return;
            }
        };
        for event in &events[..n] {
            match event.data() {
                KILL_TOKEN => {
                    let _ = kill.read();
                    return;
                }
                token if token >= EXTRA_TOKEN_BASE => {
                    let index = (token - EXTRA_TOKEN_BASE) as usize;
                    if !handler.process_input(index) {
                        let _ = epoll.ctl(
                            ControlOperation::Delete,
                            input_fds[index],
                            EpollEvent::default(),
                        );
                    }
                }
                token => {
                    let index = token as usize;
                    // Non-blocking read: a count already consumed is not an error.
                    let _ = queue_fds[index].read();
                    handler.process_queue(index);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Echo(mpsc::Sender<usize>);

    impl QueueHandler for Echo {
        fn process_queue(&mut self, index: usize) {
            let _ = self.0.send(index);
        }
    }

    #[test]
    fn runs_setup_first_then_wakes_per_queue_and_stops() {
        let (tx, rx) = mpsc::channel();
        let (setup_tx, setup_rx) = mpsc::channel();
        let setup_tx = std::sync::Mutex::new(setup_tx);
        let spec = WorkerSpec::new(
            "dev-test0",
            std::sync::Arc::new(move || {
                let name = std::thread::current().name().map(str::to_owned);
                setup_tx.lock().unwrap().send(name).unwrap();
            }),
        )
        .unwrap();
        let q0 = EventFd::new(EFD_NONBLOCK).unwrap();
        let q1 = EventFd::new(EFD_NONBLOCK).unwrap();
        let notify1 = q1.try_clone().unwrap();
        let mut worker = Worker::spawn(&spec, vec![q0, q1], vec![], Echo(tx)).unwrap();
        assert_eq!(setup_rx.recv().unwrap().as_deref(), Some("dev-test0"));
        assert_eq!(rx.recv().unwrap(), 0);
        assert_eq!(rx.recv().unwrap(), 1);
        notify1.write(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        worker.stop();
        assert!(rx.recv().is_err());
    }
}
