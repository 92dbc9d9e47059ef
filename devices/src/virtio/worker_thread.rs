//! A device's worker thread, made when the VM is built and reused by every activation.
//!
//! Drivers activate devices from vCPU threads (a DRIVER_OK write). A thread started there
//! would inherit the vCPU's seccomp filter, and the vCPU filter would have to allow what a
//! worker does. Starting the thread from the VMM thread, before its filter exists, lets it
//! install exactly its own; each activation then runs on it as a job.
//!
//! The handle exists before the thread ([`crate::pending_thread`]): jobs queue until the
//! thread is launched.

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::pending_thread::PendingThread;

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

impl WorkerThread {
    /// The thread's handle, and the thread, which runs `setup` first, then the jobs in
    /// order, once launched.
    pub fn new(name: &str, setup: Arc<dyn Fn() + Send + Sync>) -> (Arc<Self>, PendingThread) {
        let (jobs, queue) = channel::<Job>();
        let pending = PendingThread::new(name, move || {
            setup();
            while let Ok(job) = queue.recv() {
                job();
            }
        });
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
