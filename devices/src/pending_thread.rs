//! A thread made now and started later.
//!
//! The devices' worker threads and the guest output writers are made while the VM is
//! built, so the devices can hold their handles, but each costs a thread's start (stack,
//! clone, the thread's own seccomp filter), which the guest's first instruction need not
//! wait for: what is given to them before they start waits for them. The VMM starts them
//! all once the vCPUs run.

use std::io;

/// A thread's name and body, not yet running.
pub struct PendingThread {
    name: String,
    body: Box<dyn FnOnce() + Send>,
}

impl PendingThread {
    pub fn new(name: impl Into<String>, body: impl FnOnce() + Send + 'static) -> Self {
        Self {
            name: name.into(),
            body: Box::new(body),
        }
    }

    /// Starts the thread; it is not joined.
    pub fn launch(self) -> io::Result<()> {
        std::thread::Builder::new()
            .name(self.name)
            .spawn(self.body)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn the_body_runs_on_the_named_thread_only_once_launched() {
        let (tx, rx) = channel();
        let pending = PendingThread::new("dev-pending0", move || {
            let name = std::thread::current().name().map(str::to_string);
            tx.send(name).unwrap();
        });
        assert!(rx.try_recv().is_err());
        pending.launch().unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("dev-pending0"));
    }
}
