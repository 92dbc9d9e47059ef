//! A device's worker thread, made when the VM is built and reused by every activation.
//!
//! Drivers activate devices from vCPU threads (a DRIVER_OK write). A thread started there
//! would inherit the vCPU's seccomp filter, and the vCPU filter would have to allow what a
//! worker does. Starting the thread from the VMM thread, before its filter exists, lets it
//! install exactly its own; each activation then runs on it as a job.
//!
//! The handle exists before the thread: [`WorkerThread::new`] gives both, and jobs queue
//! until [`PendingWorker::launch`] starts the thread. So the VMM can start the threads once
//! the vCPUs run, when a thread's start no longer delays the guest's first instruction.

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The long-lived thread. Dropping the last handle ends it once its current job returns.
pub struct WorkerThread {
    jobs: Mutex<Sender<Job>>,
}

/// Waits for one job to finish.
pub struct JobHandle {
    done: Receiver<()>,
}

/// The job ended without finishing: it panicked.
#[derive(Debug, thiserror::Error)]
#[error("the device worker job did not finish")]
pub struct JobPanicked;

impl JobHandle {
    pub fn join(self) -> Result<(), JobPanicked> {
        self.done.recv().map_err(|_| JobPanicked)
    }
}

/// A worker thread not started yet; its jobs wait, in order, until it is.
pub struct PendingWorker {
    name: String,
    setup: Arc<dyn Fn() + Send + Sync>,
    queue: Receiver<Job>,
}

impl PendingWorker {
    /// Starts the thread; it runs `setup` first, then the jobs in order.
    pub fn launch(self) -> io::Result<()> {
        let Self { name, setup, queue } = self;
        std::thread::Builder::new().name(name).spawn(move || {
            setup();
            while let Ok(job) = queue.recv() {
                job();
            }
        })?;
        Ok(())
    }
}

impl WorkerThread {
    /// The thread's handle, and what starts it.
    pub fn new(name: &str, setup: Arc<dyn Fn() + Send + Sync>) -> (Arc<Self>, PendingWorker) {
        let (jobs, queue) = channel::<Job>();
        let pending = PendingWorker {
            name: name.to_string(),
            setup,
            queue,
        };
        let thread = Arc::new(Self {
            jobs: Mutex::new(jobs),
        });
        (thread, pending)
    }

    /// Runs `job` on the thread.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> io::Result<JobHandle> {
        let (finished, done) = channel();
        let job: Job = Box::new(move || {
            job();
            let _ = finished.send(());
        });
        self.jobs
            .lock()
            .unwrap()
            .send(job)
            .map_err(|_| io::Error::other("the device worker thread has ended or never started"))?;
        Ok(JobHandle { done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn setup_runs_once_then_jobs_run_in_order_on_the_named_thread() {
        let setups = Arc::new(AtomicUsize::new(0));
        let counter = setups.clone();
        let (thread, pending) = WorkerThread::new(
            "dev-test0",
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let (tx, rx) = channel();
        // Jobs given before the thread starts wait for it, in order.
        let jobs: Vec<JobHandle> = (0..3)
            .map(|i| {
                let tx = tx.clone();
                thread
                    .run(move || {
                        let name = std::thread::current().name().map(str::to_string);
                        tx.send((i, name)).unwrap();
                    })
                    .unwrap()
            })
            .collect();
        assert_eq!(setups.load(Ordering::SeqCst), 0);
        assert!(rx.try_recv().is_err());
        pending.launch().unwrap();
        for job in jobs {
            job.join().unwrap();
        }
        let seen: Vec<_> = rx.try_iter().collect();
        assert_eq!(seen.len(), 3);
        assert!(seen
            .iter()
            .enumerate()
            .all(|(i, (j, name))| i == *j && name.as_deref() == Some("dev-test0")));
        assert_eq!(setups.load(Ordering::SeqCst), 1);
    }
}
