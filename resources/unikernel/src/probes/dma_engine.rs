//! `dma-engine`: nestor's DMA engine behind the virtio-iommu, as an IOMMU driver would test
//! it. Needs nestor started with `--dma-engine iommu=on`.
//!
//! Attaches the engine to a domain, maps its ring and three buffers at IOVAs, runs a copy and
//! a fill job and checks the data and their completions, checks the MSI-X interrupt (raised
//! into the PBA while vector 0 is masked, then delivered to this CPU's local APIC once
//! unmasked: interrupts stay off, so the vector is seen waiting in the IRR), sees a PASID
//! job refused, then unmaps the copy's destination and sees a job to the stale IOVA fail
//! with TRANSLATION_FAULT, write nothing, and raise a MAPPING fault on the eventq.

use super::{Context, Outcome, Probe};
use crate::apic::LocalApic;
use crate::clock::Deadline;
use crate::idt::TIMER_VECTOR;
use crate::io::{mmio_read32, mmio_write32};
use crate::pci::{scan_bus, Bdf};
use crate::virtio_iommu::{
    self, endpoint_id, VirtioIommu, FAULT_F_WRITE, FAULT_R_MAPPING, MAP_F_READ, MAP_F_WRITE,
};
use crate::virtio_pci::Page;
use unikernel::format_line;
use unikernel::le::{get32, get64, put32, put64};
use unikernel::text::{hex, Line};

pub const PROBE: Probe = Probe {
    name: "dma-engine",
    run,
};

const VENDOR: u16 = 0x1b36;
const DEVICE: u16 = 0x00f0;
const MAGIC_NDMA: u32 = 0x414d_444e;

// Registers (docs/dma-engine.md).
const MAGIC: u64 = 0x00;
pub(super) const CONTROL: u64 = 0x10;
pub(super) const STATUS: u64 = 0x14;
const ERROR: u64 = 0x18;
pub(super) const RING_BASE_LO: u64 = 0x20;
pub(super) const RING_BASE_HI: u64 = 0x24;
pub(super) const RING_SLOTS: u64 = 0x28;
const DOORBELL: u64 = 0x30;
const HEAD: u64 = 0x34;
pub(super) const CONTROL_ENABLE: u32 = 1;
pub(super) const STATUS_ENABLED: u32 = 1;
pub(super) const STATUS_HALTED: u32 = 2;

pub(super) const OP_COPY: u8 = 1;
pub(super) const OP_FILL: u8 = 2;
const FLAG_INTERRUPT: u8 = 1;
pub(super) const FLAG_PASID: u8 = 2;
const SLOT: usize = 64;
pub(super) const SLOTS: u32 = 4;
pub(super) const ST_OK: u32 = 1;
const ST_PASID_UNSUPPORTED: u32 = 4;
pub(super) const ST_TRANSLATION_FAULT: u32 = 5;
pub(super) const ST_PAGE_REQUEST_FAILED: u32 = 7;
pub(super) const FAULT_WRITE: u32 = 1;

const MSIX_CAPABILITY: u8 = 0x11;
const MSIX_ENABLE: u32 = 1 << 31;
const VECTOR_MASKED: u32 = 1;

/// Where the engine sees its ring and buffers.
const IOVA_RING: u64 = 0x9000_0000;
const IOVA_SRC: u64 = 0x9000_1000;
const IOVA_DST: u64 = 0x9000_2000;
const IOVA_FILL: u64 = 0x9000_3000;
/// Bytes per job: small, as every guest instruction is emulated on some hosts.
pub(super) const LEN: usize = 1024;
const PATTERN: u64 = 0x0123_4567_89ab_cdef;
const COMPLETION_MS: u64 = 5000;

pub(super) static mut RING: Page = Page::ZERO;
static mut SRC: Page = Page::ZERO;
static mut DST: Page = Page::ZERO;
static mut FILL: Page = Page::ZERO;

pub(super) fn page(which: *mut Page) -> &'static mut Page {
    // SAFETY: only this single-threaded probe touches its pages; the device writes them only
    // while the probe polls.
    unsafe { &mut *which }
}

fn fail(what: &str) -> Line {
    format_line!(what)
}

/// A job of LEN bytes.
#[derive(Clone, Copy, Default)]
pub(super) struct Job {
    pub opcode: u8,
    pub flags: u8,
    pub pasid: u32,
    pub src: u64,
    pub dst: u64,
    pub pattern: u64,
}

/// The engine's BAR 0 and its MSI-X table.
pub(super) struct Engine {
    regs: u64,
    msix_table: u64,
    msix_pba: u64,
}

impl Engine {
    pub fn read(&self, reg: u64) -> u32 {
        // SAFETY: BAR 0 is MMIO this probe owns.
        unsafe { mmio_read32(self.regs + reg) }
    }

    pub fn write(&self, reg: u64, value: u32) {
        // SAFETY: as above.
        unsafe { mmio_write32(self.regs + reg, value) }
    }

    fn vector0_pending(&self) -> bool {
        // SAFETY: the PBA is in BAR 0.
        unsafe { mmio_read32(self.msix_pba) & 1 != 0 }
    }

    fn set_vector0(&self, dword: u64, value: u32) {
        // SAFETY: the MSI-X table is in BAR 0.
        unsafe { mmio_write32(self.msix_table + dword * 4, value) }
    }

    /// Writes job `index` into its slot with its completion cleared.
    pub fn post(&self, index: u32, job: Job) {
        self.post_len(index, job, LEN as u64);
    }

    /// Writes job `index`, moving `len` bytes, into its slot with its completion cleared.
    pub fn post_len(&self, index: u32, job: Job, len: u64) {
        let ring = &mut page(&raw mut RING).0;
        let at = (index % SLOTS) as usize * SLOT;
        let slot = &mut ring[at..at + SLOT];
        slot.fill(0);
        slot[0] = job.opcode;
        slot[1] = job.flags;
        put32(slot, 4, job.pasid);
        put64(slot, 8, job.src);
        put64(slot, 16, job.dst);
        put64(slot, 24, len);
        put64(slot, 32, job.pattern);
    }

    /// Rings the doorbell with `tail`.
    pub fn ring(&self, tail: u32) {
        self.write(DOORBELL, tail);
    }

    /// Rings the doorbell with `tail` and waits for HEAD to reach it.
    pub fn run_until(&self, tail: u32) -> Outcome {
        self.write(DOORBELL, tail);
        let deadline = Deadline::after_ms(COMPLETION_MS);
        while self.read(HEAD) != tail {
            if self.read(STATUS) & STATUS_HALTED != 0 {
                return Err(format_line!("engine halted, error ", self.read(ERROR)));
            }
            if deadline.passed() {
                return Err(format_line!("HEAD stuck at ", self.read(HEAD)));
            }
        }
        Ok(())
    }
}

/// Job `index`'s completion: status, fault flags, bytes done, fault address.
pub(super) fn completion(index: u32) -> (u32, u32, u64, u64) {
    let ring = &page(&raw mut RING).0;
    let at = (index % SLOTS) as usize * SLOT + 40;
    (
        get32(ring, at),
        get32(ring, at + 4),
        get64(ring, at + 8),
        get64(ring, at + 16),
    )
}

pub(super) fn find_engine() -> Option<Bdf> {
    let mut found = None;
    scan_bus(0, |f| {
        if found.is_none() && f.vendor == VENDOR && f.device == DEVICE {
            found = Some(f.bdf);
        }
    });
    found
}

fn config8(bdf: Bdf, offset: u8) -> u8 {
    (bdf.read32(offset & !3) >> ((offset & 3) * 8)) as u8
}

/// Memory decoding and bus mastering on, MSI-X on with vector 0 masked and aimed at this
/// CPU's `vector`.
pub(super) fn open_engine(bdf: Bdf, apic_id: u32, vector: u8) -> Result<Engine, Line> {
    let command = bdf.read32(0x04) & 0xffff;
    bdf.write32(0x04, command | 0x6);
    let bar = u64::from(bdf.read32(0x10) & !0xf);
    let mut cap = config8(bdf, 0x34) & !3;
    let mut hops = 0;
    while cap != 0 && config8(bdf, cap) != MSIX_CAPABILITY && hops < 48 {
        cap = config8(bdf, cap + 1) & !3;
        hops += 1;
    }
    if cap == 0 || hops == 48 {
        return Err(fail("no MSI-X capability"));
    }
    let table = bdf.read32(cap + 4);
    let pba = bdf.read32(cap + 8);
    if table & 7 != 0 || pba & 7 != 0 {
        return Err(fail("MSI-X table or PBA not in BAR 0"));
    }
    let engine = Engine {
        regs: bar,
        msix_table: bar + u64::from(table & !7),
        msix_pba: bar + u64::from(pba & !7),
    };
    if engine.read(MAGIC) != MAGIC_NDMA {
        return Err(format_line!(
            "magic ",
            hex(u64::from(engine.read(MAGIC)), 8)
        ));
    }
    engine.set_vector0(3, VECTOR_MASKED);
    engine.set_vector0(0, 0xfee0_0000 | apic_id << 12);
    engine.set_vector0(1, 0);
    engine.set_vector0(2, u32::from(vector));
    let control = bdf.read32(cap);
    bdf.write32(cap, control | MSIX_ENABLE);
    Ok(engine)
}

fn run(_ctx: &Context, _arg: Option<&str>) -> Outcome {
    let iommu_bdf = virtio_iommu::find().ok_or_else(|| fail("no virtio-iommu on bus 0"))?;
    let engine_bdf = find_engine().ok_or_else(|| fail("no DMA engine on bus 0"))?;
    let endpoint = endpoint_id(engine_bdf);
    let apic = LocalApic::current().map_err(fail)?;
    apic.enable();

    let mut iommu = VirtioIommu::open(iommu_bdf)?;
    let (first, last) = iommu.domain_range();
    let domain = first + 1;
    if last < domain {
        return Err(format_line!(
            "domain range ",
            first,
            "-",
            last,
            " too small"
        ));
    }
    iommu.attach(domain, endpoint, 0)?;
    let rw = MAP_F_READ | MAP_F_WRITE;
    for (iova, which, flags) in [
        (IOVA_RING, &raw mut RING, rw),
        (IOVA_SRC, &raw mut SRC, MAP_F_READ),
        (IOVA_DST, &raw mut DST, rw),
        (IOVA_FILL, &raw mut FILL, rw),
    ] {
        iommu.map(domain, iova, 0x1000, page(which).address(), flags)?;
    }

    let engine = open_engine(engine_bdf, apic.id(), TIMER_VECTOR)?;
    engine.write(RING_BASE_LO, IOVA_RING as u32);
    engine.write(RING_BASE_HI, (IOVA_RING >> 32) as u32);
    engine.write(RING_SLOTS, SLOTS);
    engine.write(CONTROL, CONTROL_ENABLE);
    if engine.read(STATUS) & (STATUS_ENABLED | STATUS_HALTED) != STATUS_ENABLED {
        return Err(format_line!(
            "status ",
            engine.read(STATUS),
            " after enable"
        ));
    }

    // A copy and a fill, each asking for the interrupt.
    let (src, dst, fill) = (page(&raw mut SRC), page(&raw mut DST), page(&raw mut FILL));
    for (i, b) in src.0[..LEN].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13) ^ 0xa5;
    }
    let copy = Job {
        opcode: OP_COPY,
        src: IOVA_SRC,
        dst: IOVA_DST,
        ..Job::default()
    };
    engine.post(
        0,
        Job {
            flags: FLAG_INTERRUPT,
            ..copy
        },
    );
    engine.post(
        1,
        Job {
            opcode: OP_FILL,
            flags: FLAG_INTERRUPT,
            dst: IOVA_FILL,
            pattern: PATTERN,
            ..Job::default()
        },
    );
    engine.run_until(2)?;
    for index in [0, 1] {
        let (status, _, done, _) = completion(index);
        if status != ST_OK || done != LEN as u64 {
            return Err(format_line!(
                "job ", index, " status ", status, " done ", done
            ));
        }
    }
    if dst.0[..LEN] != src.0[..LEN] {
        return Err(fail("copied data differs"));
    }
    let bytes = PATTERN.to_le_bytes();
    if fill.0[..LEN].chunks(8).any(|c| c != bytes) {
        return Err(fail("filled data differs"));
    }

    // The interrupt: pending while masked, delivered once unmasked.
    if !engine.vector0_pending() {
        return Err(fail("no MSI-X vector 0 pending after the jobs"));
    }
    if apic.requested(TIMER_VECTOR) {
        return Err(fail("vector already requested before unmasking"));
    }
    engine.set_vector0(3, 0);
    let deadline = Deadline::after_ms(COMPLETION_MS);
    while !apic.requested(TIMER_VECTOR) {
        if deadline.passed() {
            return Err(fail("unmasked MSI-X vector 0 never reached the local APIC"));
        }
    }
    if engine.vector0_pending() {
        return Err(fail("PBA bit still set after delivery"));
    }
    // Let the CPU take it (the timer vector's handler acknowledges it).
    Deadline::after_ms(1).wait();

    // A job with a PASID is refused outside nested translation (iommu=nested).
    engine.post(
        2,
        Job {
            opcode: OP_FILL,
            flags: FLAG_PASID,
            pasid: 1,
            dst: IOVA_FILL,
            ..Job::default()
        },
    );
    engine.run_until(3)?;
    if completion(2).0 != ST_PASID_UNSUPPORTED {
        return Err(format_line!("PASID job status ", completion(2).0));
    }

    // Unmapped: the stale IOVA faults, nothing is written, the IOMMU reports it.
    iommu.unmap(domain, IOVA_DST, 0x1000)?;
    dst.0[..LEN].fill(0);
    engine.post(3, copy);
    engine.run_until(4)?;
    let (status, flags, done, address) = completion(3);
    if status != ST_TRANSLATION_FAULT || flags != FAULT_WRITE || done != 0 || address != IOVA_DST {
        return Err(format_line!(
            "stale job status ",
            status,
            " flags ",
            flags,
            " done ",
            done,
            " at ",
            hex(address, 16)
        ));
    }
    if dst.0[..LEN].iter().any(|&b| b != 0) {
        return Err(fail("a job to an unmapped IOVA wrote memory"));
    }
    let (fault_at, fault_flags) = iommu.wait_fault(FAULT_R_MAPPING, endpoint)?;
    if fault_at != IOVA_DST || fault_flags & FAULT_F_WRITE == 0 {
        return Err(format_line!(
            "fault at ",
            hex(fault_at, 16),
            " flags ",
            fault_flags
        ));
    }
    engine.write(CONTROL, 0);
    iommu.detach(domain, endpoint)
}
