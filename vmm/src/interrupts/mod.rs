//! Device interrupts and notifications on KVM: MSI vectors as GSIs with MSI routes and
//! irqfds, and queue notifications as ioeventfds.
//!
//! KVM_SET_GSI_ROUTING replaces the whole table, so the table kept here always holds the
//! in-kernel PIC/IOAPIC routes of GSIs 0-23 besides the MSI routes.
//!
//! The devices keep this handle, and with it the VM, for as long as they live; once no vCPU
//! runs, [`KvmInterrupts::release_vm`] lets go of the VM so that it can be closed while the
//! devices (and their workers) are left to the process exit.

mod msi_decode;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, RwLock};

use devices::interrupt::{MsiInterruptGroup, MsiInterruptManager, MsiMessage};
use devices::pci::IoEventRegistry;
use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::vm::GuestVm;

pub use msi_decode::DecodedMsi;

/// GSIs below this belong to the IOAPIC pins.
const FIRST_MSI_GSI: u32 = 24;
/// KVM's limit on routing entries.
const MAX_GSI: u32 = 4096;

fn to_io(e: kvm_ioctls::Error) -> io::Error {
    io::Error::from_raw_os_error(e.errno())
}

fn irqchip_route(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    entry.u.irqchip.irqchip = irqchip;
    entry.u.irqchip.pin = pin;
    entry
}

fn msi_route(gsi: u32, message: MsiMessage) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    entry.u.msi.address_lo = message.address as u32;
    entry.u.msi.address_hi = (message.address >> 32) as u32;
    entry.u.msi.data = message.data;
    entry
}

struct Routing {
    msi: BTreeMap<u32, MsiMessage>,
    next_gsi: u32,
}

struct Inner {
    /// `None` once released: every later request fails.
    vm: RwLock<Option<Arc<GuestVm>>>,
    routing: Mutex<Routing>,
}

/// Allocates GSIs and keeps KVM's routing table; a cheap handle shared by all devices.
#[derive(Clone)]
pub struct KvmInterrupts(Arc<Inner>);

impl KvmInterrupts {
    pub fn new(vm: Arc<GuestVm>) -> Self {
        Self(Arc::new(Inner {
            vm: RwLock::new(Some(vm)),
            routing: Mutex::new(Routing {
                msi: BTreeMap::new(),
                next_gsi: FIRST_MSI_GSI,
            }),
        }))
    }

    fn vm(&self) -> io::Result<Arc<GuestVm>> {
        self.0
            .vm
            .read()
            .unwrap()
            .clone()
            .ok_or_else(|| io::Error::other("the VM has ended"))
    }

    /// Lets go of the VM. Call it once no vCPU runs: devices can no longer change routes,
    /// irqfds or ioeventfds afterwards.
    pub fn release_vm(&self) {
        self.0.vm.write().unwrap().take();
    }

    /// The MSI routes, by GSI; `None` while a device is changing them. Never waits, so a
    /// report cannot hang on a thread stuck while holding the table.
    pub fn msi_routes(&self) -> Option<Vec<(u32, MsiMessage)>> {
        let routing = self.0.routing.try_lock().ok()?;
        Some(routing.msi.iter().map(|(&gsi, &m)| (gsi, m)).collect())
    }

    fn commit(&self, routing: &Routing) -> io::Result<()> {
        let mut entries = Vec::new();
        for gsi in 0..FIRST_MSI_GSI {
            if gsi < 16 {
                let (chip, pin) = if gsi < 8 {
                    (KVM_IRQCHIP_PIC_MASTER, gsi)
                } else {
                    (KVM_IRQCHIP_PIC_SLAVE, gsi - 8)
                };
                entries.push(irqchip_route(gsi, chip, pin));
            }
            entries.push(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        }
        entries.extend(routing.msi.iter().map(|(&gsi, &m)| msi_route(gsi, m)));
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|e| io::Error::other(format!("GSI routing table: {e:?}")))?;
        self.vm()?.set_gsi_routing(&table).map_err(to_io)
    }

    fn set_route(&self, gsi: u32, message: Option<MsiMessage>) -> io::Result<()> {
        let mut routing = self.0.routing.lock().unwrap();
        let changed = match message {
            Some(m) => routing.msi.insert(gsi, m) != Some(m),
            None => routing.msi.remove(&gsi).is_some(),
        };
        if changed {
            self.commit(&routing)?;
        }
        Ok(())
    }
}

/// One device's vectors: a GSI and an irqfd each.
struct KvmMsiGroup {
    interrupts: KvmInterrupts,
    vectors: Vec<(u32, EventFd)>,
    /// Which vectors' irqfds are held: detached from KVM, so their eventfds keep what
    /// arrives.
    held: Mutex<Vec<bool>>,
}

/// Whether `fd` has a count waiting, without taking it.
fn readable(fd: &EventFd) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: one valid pollfd, a valid timeout, no signal mask.
    let ready = unsafe { libc::ppoll(&mut poll, 1, &zero, std::ptr::null()) };
    ready == 1 && poll.revents & libc::POLLIN != 0
}

impl MsiInterruptGroup for KvmMsiGroup {
    fn set_route(&self, vector: u16, message: Option<MsiMessage>) -> io::Result<()> {
        let (gsi, _) = self
            .vectors
            .get(usize::from(vector))
            .ok_or_else(|| io::Error::other("no such vector"))?;
        self.interrupts.set_route(*gsi, message)
    }

    fn trigger(&self, vector: u16) -> io::Result<()> {
        match self.vectors.get(usize::from(vector)) {
            Some((_, irqfd)) => irqfd.write(1),
            None => Ok(()),
        }
    }

    fn irqfd(&self, vector: u16) -> Option<&EventFd> {
        self.vectors
            .get(usize::from(vector))
            .map(|(_, irqfd)| irqfd)
    }

    /// Detaching the irqfd from KVM leaves what arrives in the eventfd; attaching it again
    /// makes KVM deliver a waiting count at once (it polls the eventfd on assignment).
    fn hold(&self, vector: u16, held: bool) -> io::Result<()> {
        let index = usize::from(vector);
        let Some((gsi, irqfd)) = self.vectors.get(index) else {
            return Err(io::Error::other("no such vector"));
        };
        let mut holds = self.held.lock().unwrap();
        if holds[index] == held {
            return Ok(());
        }
        let vm = self.interrupts.vm()?;
        if held {
            vm.unregister_irqfd(irqfd, *gsi).map_err(to_io)?;
        } else {
            vm.register_irqfd(irqfd, *gsi).map_err(to_io)?;
        }
        holds[index] = held;
        Ok(())
    }

    fn pending(&self, vector: u16) -> bool {
        let index = usize::from(vector);
        let held = self.held.lock().unwrap().get(index).copied() == Some(true);
        held && readable(&self.vectors[index].1)
    }
}

impl MsiInterruptManager for KvmInterrupts {
    fn create_group(&self, count: u16) -> io::Result<Arc<dyn MsiInterruptGroup>> {
        let first = {
            let mut routing = self.0.routing.lock().unwrap();
            let first = routing.next_gsi;
            let end = first + u32::from(count);
            if end > MAX_GSI {
                return Err(io::Error::other("out of GSIs for MSI vectors"));
            }
            routing.next_gsi = end;
            first
        };
        let vm = self.vm()?;
        let mut vectors = Vec::with_capacity(usize::from(count));
        for gsi in first..first + u32::from(count) {
            let irqfd = EventFd::new(EFD_NONBLOCK)?;
            vm.register_irqfd(&irqfd, gsi).map_err(to_io)?;
            vectors.push((gsi, irqfd));
        }
        Ok(Arc::new(KvmMsiGroup {
            interrupts: self.clone(),
            held: Mutex::new(vec![false; vectors.len()]),
            vectors,
        }))
    }
}

impl IoEventRegistry for KvmInterrupts {
    fn register(&self, fd: &EventFd, address: u64) -> io::Result<()> {
        self.vm()?
            .register_ioevent(fd, &IoEventAddress::Mmio(address), NoDatamatch)
            .map_err(to_io)
    }

    fn unregister(&self, fd: &EventFd, address: u64) -> io::Result<()> {
        self.vm()?
            .unregister_ioevent(fd, &IoEventAddress::Mmio(address), NoDatamatch)
            .map_err(to_io)
    }
}
