//! Message-signalled interrupts as devices see them.
//!
//! A device raises "vector N"; the VMM decides how that reaches the guest (KVM GSI routing
//! and an irqfd per vector). Devices never learn about GSIs.

use std::io;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

/// The address/data pair a guest programmed into an MSI-X table entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// The interrupt vectors of one device.
///
/// `trigger` is called from device worker threads and must stay cheap (one eventfd write);
/// `set_route` is called from vCPU threads when the guest reprograms a vector.
pub trait MsiInterruptGroup: Send + Sync {
    /// Points `vector` at `message`; `None` removes the route (nothing is delivered).
    fn set_route(&self, vector: u16, message: Option<MsiMessage>) -> io::Result<()>;
    /// Delivers `vector` to the guest with the message last routed to it.
    fn trigger(&self, vector: u16) -> io::Result<()>;
    /// The eventfd that delivers `vector` when written, for a source outside this process
    /// (a passthrough device's interrupts, signalled by the host kernel). `None` when the
    /// group has no such eventfd.
    fn irqfd(&self, _vector: u16) -> Option<&EventFd> {
        None
    }
    /// Holds `vector`'s irqfd (the guest masked the vector): what the outside source
    /// signals meanwhile stays in the eventfd instead of being delivered, and releasing
    /// the hold delivers it at once, with the route then set. A group without irqfds
    /// holds nothing.
    fn hold(&self, _vector: u16, _held: bool) -> io::Result<()> {
        Ok(())
    }
    /// Whether held `vector` has a signal waiting: its MSI-X pending bit.
    fn pending(&self, _vector: u16) -> bool {
        false
    }
}

/// Creates vector groups; the VMM's implementation allocates GSIs and irqfds.
pub trait MsiInterruptManager: Send + Sync {
    fn create_group(&self, vectors: u16) -> io::Result<Arc<dyn MsiInterruptGroup>>;
}
