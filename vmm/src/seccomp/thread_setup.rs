//! The thread-setup hook the VMM hands to virtio devices for their worker threads.

use std::sync::Arc;

use devices::virtio::ThreadSetupHook;
use devices::{VmControl, VmExitReason};

use super::{install, SeccompMode, ThreadKind};

/// Installs the device-worker filter on the worker thread that runs it. If that fails the
/// VM is asked to end and the worker goes no further: it must not touch a queue unfiltered.
pub fn device_worker_setup(mode: SeccompMode, control: VmControl) -> ThreadSetupHook {
    Arc::new(move || {
        if let Err(e) = install(ThreadKind::DeviceWorker, mode) {
            let name = std::thread::current()
                .name()
                .unwrap_or("device worker")
                .to_owned();
            control.request_exit(VmExitReason::VmmFailure(format!("{name}: {e}")));
            panic!("{name}: {e}");
        }
    })
}
