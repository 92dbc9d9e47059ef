//! What a PCI function implements, and how the VMM hooks BAR notifications.

use std::io;

use vmm_sys_util::eventfd::EventFd;

use super::config::BarMove;

/// A memory BAR as currently programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciBar {
    pub index: usize,
    pub address: u64,
    pub size: u64,
}

/// A PCI function on nestor's bus.
pub trait PciDevice: Send {
    /// The configuration dword at register index `reg` (0..1024; ECAM reaches past 64).
    fn read_config_register(&mut self, reg: usize) -> u32;
    /// A guest write of 1, 2 or 4 bytes at byte `offset` of register `reg`; returns the BAR
    /// move it causes. After a write to the command register or a BAR register the root
    /// puts the BARs where `bars` says, while Memory Space Enable is set.
    fn write_config_register(&mut self, reg: usize, offset: usize, data: &[u8]) -> Option<BarMove>;
    /// The memory BARs, at the addresses their registers hold.
    fn bars(&self) -> Vec<PciBar>;
    /// A guest read at `offset` into BAR `bar`.
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// A guest write at `offset` into BAR `bar`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]);
    /// Called once BAR `bar` decodes at `new` after it last decoded at `old`.
    fn bar_moved(&mut self, _bar: usize, _old: u64, _new: u64) {}
    /// Called whenever BAR `bar` starts decoding at `Some(address)` on the MMIO bus, or
    /// stops decoding (`None`): memory decoding went off, or it moved, or a placement
    /// was refused. Only addresses the root accepted are ever given here.
    fn bar_placed(&mut self, _bar: usize, _address: Option<u64>) {}
    /// Eventfds the VMM should signal on a guest write at `(offset, fd)` within BAR `bar`
    /// (KVM ioeventfds), so such writes never reach the device through the bus. They are
    /// registered while the BAR decodes and only then.
    fn ioeventfds(&self, _bar: usize) -> Vec<(u64, &EventFd)> {
        Vec::new()
    }
}

/// Registers an eventfd to be signalled when the guest writes a guest-physical address.
/// The VMM implements it with KVM_IOEVENTFD.
pub trait IoEventRegistry: Send + Sync {
    fn register(&self, fd: &EventFd, address: u64) -> io::Result<()>;
    fn unregister(&self, fd: &EventFd, address: u64) -> io::Result<()>;
}
