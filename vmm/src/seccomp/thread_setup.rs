//! Setup hooks for the threads the devices crate starts for nestor (device workers, guest
//! output writers): each installs the thread's own filter before the thread does any work.

use std::sync::Arc;

use devices::virtio::ThreadSetupHook;
use devices::{VmControl, VmExitReason};

use super::{install, SeccompMode, ThreadKind};

/// Installs `kind`'s filter on the thread that runs it. If that fails the VM is asked to
/// end and the thread goes no further: it must not do its work unfiltered.
pub fn filtered_thread_setup(
    kind: ThreadKind,
    mode: SeccompMode,
    control: VmControl,
) -> ThreadSetupHook {
    Arc::new(move || {
        if let Err(e) = install(kind, mode) {
            let name = std::thread::current()
                .name()
                .unwrap_or(kind.name())
                .to_owned();
            control.request_exit(VmExitReason::VmmFailure(format!("{name}: {e}")));
            panic!("{name}: {e}");
        }
    })
}

/// The hook for virtio device worker threads.
pub fn device_worker_setup(mode: SeccompMode, control: VmControl) -> ThreadSetupHook {
    filtered_thread_setup(ThreadKind::DeviceWorker, mode, control)
}
