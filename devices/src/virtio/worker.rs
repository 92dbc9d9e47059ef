//! The one device worker: a job on the device's worker thread that waits on its queues'
//! notification eventfds (and any input fds) and hands each wake-up to the device's handler.
//!
//! Stopping is bounded and never waits for the thread: [`Worker::stop`] sets a flag and
//! wakes the job, which sees it before its next chain (a handler serves at most [`BUDGET`]
//! chains per call), and the transport revokes the activation's DMA, so whatever the old job
//! still finishes (a disk read in progress) can no longer reach the guest. A new activation
//! queues behind it on the same thread.
//!
//! The epoll set is created on the worker thread, so threads that start activations (vCPUs)
//! never create epoll sets or eventfds.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::device::WorkerSpec;
use super::worker_thread::{JobHandle, JobPanicked};

/// Chains a handler serves per call before the worker looks at its stop flag and its other
/// queues again.
pub const BUDGET: usize = 32;

const INPUT_TOKEN_BASE: u64 = 1 << 32;

/// What a device does when woken.
pub trait QueueHandler: Send + 'static {
    /// Queue `position` (in the worker's queue list) was notified, or has work left: serve at
    /// most `budget` chains and return whether any are left.
    fn process_queue(&mut self, position: usize, budget: usize) -> bool;
    /// Input fd `index` is readable; return false to stop watching it (EOF, error).
    fn process_input(&mut self, _index: usize) -> bool {
        false
    }
}

/// A running worker job. Dropping it stops it, without waiting.
pub struct Worker {
    stop: Arc<AtomicBool>,
    wake: Arc<EventFd>,
    job: Option<JobHandle>,
}

impl Worker {
    /// Runs `handler` on `spec`'s thread, woken by `queue_fds` (at least one) and
    /// `input_fds`. Every queue is served once at start, in case the driver notified early.
    pub fn spawn<H: QueueHandler>(
        spec: &WorkerSpec,
        queue_fds: Vec<Arc<EventFd>>,
        input_fds: Vec<RawFd>,
        handler: H,
    ) -> io::Result<Worker> {
        let wake = queue_fds
            .first()
            .cloned()
            .ok_or_else(|| io::Error::other("a device worker needs a queue"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let job_stop = stop.clone();
        let name = spec.name.clone();
        let job = spec.thread.run(move || {
            if let Err(e) = run(&job_stop, &queue_fds, &input_fds, handler) {
                log::error!("{name}: device worker failed: {e}");
            }
        })?;
        Ok(Worker {
            stop,
            wake,
            job: Some(job),
        })
    }

    /// Tells the job to end; returns at once.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        // The job may be in epoll_wait: any of its eventfds wakes it. A spurious
        // notification is harmless to whoever serves the queue next.
        let _ = self.wake.write(1);
    }

    /// Stops the job and waits until it has ended (tests and teardown that need it).
    pub fn stop_and_wait(mut self) -> Result<(), JobPanicked> {
        self.stop();
        self.job.take().map_or(Ok(()), JobHandle::join)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<H: QueueHandler>(
    stop: &AtomicBool,
    queue_fds: &[Arc<EventFd>],
    input_fds: &[RawFd],
    mut handler: H,
) -> io::Result<()> {
    let stopped = || stop.load(Ordering::Acquire);
    if stopped() {
        return Ok(());
    }
    let epoll = Epoll::new()?;
    let readable = |token| EpollEvent::new(EventSet::IN, token);
    for (i, fd) in queue_fds.iter().enumerate() {
        epoll.ctl(ControlOperation::Add, fd.as_raw_fd(), readable(i as u64))?;
    }
    for (i, &fd) in input_fds.iter().enumerate() {
        epoll.ctl(
            ControlOperation::Add,
            fd,
            readable(INPUT_TOKEN_BASE + i as u64),
        )?;
    }
    let mut pending = vec![true; queue_fds.len()];
    let mut events = vec![EpollEvent::default(); queue_fds.len() + input_fds.len()];
    loop {
        for (position, left) in pending.iter_mut().enumerate() {
            if stopped() {
                return Ok(());
            }
            if *left {
                *left = handler.process_queue(position, BUDGET);
            }
        }
        if stopped() {
            return Ok(());
        }
        // With work left, only look for other events and come straight back.
        let timeout = if pending.contains(&true) { 0 } else { -1 };
        let n = match epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for event in &events[..n] {
            let token = event.data();
            if token >= INPUT_TOKEN_BASE {
                let index = (token - INPUT_TOKEN_BASE) as usize;
                if !stopped() && !handler.process_input(index) {
                    let _ = epoll.ctl(
                        ControlOperation::Delete,
                        input_fds[index],
                        EpollEvent::default(),
                    );
                }
            } else if let Some(fd) = queue_fds.get(token as usize) {
                // Non-blocking read: a count already consumed is not an error.
                let _ = fd.read();
                pending[token as usize] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    /// Reports each call; with `busy`, always has work left and takes 1 ms per chain.
    struct Echo {
        calls: mpsc::Sender<usize>,
        busy: bool,
    }

    impl QueueHandler for Echo {
        fn process_queue(&mut self, position: usize, budget: usize) -> bool {
            let _ = self.calls.send(position);
            if self.busy {
                for _ in 0..budget {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            self.busy
        }
    }

    fn eventfd() -> Arc<EventFd> {
        Arc::new(EventFd::new(EFD_NONBLOCK).unwrap())
    }

    #[test]
    fn runs_setup_first_then_wakes_per_queue_and_stops() {
        let (tx, rx) = mpsc::channel();
        let (setup_tx, setup_rx) = mpsc::channel();
        let setup_tx = std::sync::Mutex::new(setup_tx);
        let (spec, pending) = WorkerSpec::new(
            "dev-test0",
            Arc::new(move || {
                let name = std::thread::current().name().map(str::to_owned);
                setup_tx.lock().unwrap().send(name).unwrap();
            }),
        );
        pending.launch().unwrap();
        let q1 = eventfd();
        let worker = Worker::spawn(
            &spec,
            vec![eventfd(), q1.clone()],
            vec![],
            Echo {
                calls: tx,
                busy: false,
            },
        )
        .unwrap();
        assert_eq!(setup_rx.recv().unwrap().as_deref(), Some("dev-test0"));
        assert_eq!(rx.recv().unwrap(), 0);
        assert_eq!(rx.recv().unwrap(), 1);
        q1.write(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        worker.stop_and_wait().unwrap();
        assert!(rx.recv().is_err());
    }

    #[test]
    fn a_busy_queue_neither_starves_the_others_nor_delays_the_stop() {
        let (tx, rx) = mpsc::channel();
        let spec = WorkerSpec::unconfined("dev-test1");
        let q1 = eventfd();
        let worker = Worker::spawn(
            &spec,
            vec![eventfd(), q1.clone()],
            vec![],
            Echo {
                calls: tx,
                busy: true,
            },
        )
        .unwrap();
        // Queue 0 always has work; queue 1 still gets served between its budgets.
        q1.write(1).unwrap();
        let served: Vec<usize> = rx.iter().take(6).collect();
        assert!(served.contains(&1), "queue 1 never served: {served:?}");
        let asked = Instant::now();
        worker.stop();
        // Stop returns at once; the job ends within one budget of chains.
        assert!(asked.elapsed() < Duration::from_millis(20));
        let _ = rx.iter().count();
        assert!(asked.elapsed() < Duration::from_secs(2));
    }
}
