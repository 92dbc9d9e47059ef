//! The nested-translation probes: nestor's DMA engine behind the virtio-iommu in nested
//! mode (`--dma-engine iommu=nested`), with stage 1 owned by this guest as the extension
//! describes (docs/virtio-iommu-nested.md): a linear CD table and VMSAv8-64 4 KiB-granule
//! tables built here by hand, handed over with ATTACH_TABLE.
//!
//! Every probe starts from [`Nested::open`]: the virtio-iommu reset and opened with the
//! extension, the engine's PASID capability enabled (through ECAM), PASIDs 1 and 2 each
//! with its ASID and its own three-level tables mapping `IOVA_SRC` (read-only) and
//! `IOVA_DST` onto pages of their own, and the engine's endpoint attached with S1DSS
//! bypass, so its ring (accessed without a PASID) is at a guest-physical address.

pub mod fault;
pub mod hostile;
pub mod invalidate;
pub mod s1;

use super::dma_engine::{
    completion, find_engine, open_engine, page, Engine, Job, CONTROL, CONTROL_ENABLE, OP_COPY,
    OP_FILL, RING, RING_BASE_HI, RING_BASE_LO, RING_SLOTS, SLOTS, STATUS, STATUS_ENABLED,
    STATUS_HALTED,
};
use super::Context;
use crate::acpi::Acpi;
use crate::apic::LocalApic;
use crate::ecam::Ecam;
use crate::idt::TIMER_VECTOR;
use crate::virtio_iommu::{self, attach_table_request, endpoint_id, VirtioIommu, S_OK};
use crate::virtio_pci::Page;
use unikernel::format_line;
use unikernel::le::put64;
use unikernel::smmu_tables::{cd, index, ste0, ste1, table, S1DSS_BYPASS, STE_CONFIG_S1_TRANSLATE};
use unikernel::text::Line;

use super::dma_engine::{FAULT_WRITE, FLAG_PASID, LEN, ST_OK, ST_TRANSLATION_FAULT};

/// The PASIDs with tables; each uses its PASID as its ASID.
pub const PASIDS: [u32; 2] = [1, 2];
/// log2 of the CDs in the table: PASIDs 0 to 3.
pub const CD_MAX_BITS: u64 = 2;
/// Mapped read-only for each PASID, onto its source page.
pub const IOVA_SRC: u64 = 0x4000_0000;
/// Mapped read-write for each PASID, onto its destination page.
pub const IOVA_DST: u64 = 0x4000_1000;
/// In the same level-3 table, mapped for no PASID.
pub const IOVA_UNMAPPED: u64 = 0x4000_5000;
const PASID_CAPABILITY: u16 = 0x1b;
const PASID_ENABLE: u32 = 1 << 16;
const PRI_CAPABILITY: u16 = 0x13;
const PRI_ENABLE: u32 = 1;
/// Outstanding page requests the engine may have (its capacity is 256).
pub const PRI_ALLOCATION: u32 = 256;

static mut CD_TABLE: Page = Page::ZERO;
/// Levels 1, 2 and 3 of PASIDs 1 and 2.
static mut TABLES: [Page; 6] = [Page::ZERO; 6];
/// Source and destination of PASIDs 1 and 2, then spares.
static mut DATA: [Page; 6] = [Page::ZERO; 6];

fn pages(which: *mut [Page; 6], i: usize) -> &'static mut Page {
    // SAFETY: only the single-threaded nested probes touch these pages; the device reads
    // and writes them only while a probe waits for it.
    unsafe { &mut (*which)[i] }
}

/// Table page `level` (1 to 3) of `pasid` (1 or 2).
pub fn table_page(pasid: u32, level: u32) -> &'static mut Page {
    pages(
        &raw mut TABLES,
        (pasid as usize - 1) * 3 + level as usize - 1,
    )
}

pub fn src_page(pasid: u32) -> &'static mut Page {
    pages(&raw mut DATA, (pasid as usize - 1) * 2)
}

pub fn dst_page(pasid: u32) -> &'static mut Page {
    pages(&raw mut DATA, (pasid as usize - 1) * 2 + 1)
}

/// Pages no PASID maps at open.
pub fn spare_page(i: usize) -> &'static mut Page {
    pages(&raw mut DATA, 4 + i)
}

pub fn cd_table() -> &'static mut Page {
    page(&raw mut CD_TABLE)
}

/// Writes descriptor `value` at entry `i` of `table`.
pub fn set_entry(table: &mut Page, i: usize, value: u64) {
    put64(&mut table.0, i * 8, value);
}

/// Writes context descriptor `cd` as the one of `pasid`.
pub fn set_cd(pasid: u32, words: [u64; 8]) {
    for (i, word) in words.iter().enumerate() {
        put64(&mut cd_table().0, pasid as usize * 64 + i * 8, *word);
    }
}

/// The tables every probe starts from.
fn build_tables() {
    cd_table().0.fill(0);
    for pasid in PASIDS {
        for level in 1..=3 {
            table_page(pasid, level).0.fill(0);
        }
        let (l1, l2, l3) = (
            table_page(pasid, 1).address(),
            table_page(pasid, 2).address(),
            table_page(pasid, 3).address(),
        );
        set_entry(table_page(pasid, 1), index(IOVA_SRC, 1), table(l2));
        set_entry(table_page(pasid, 2), index(IOVA_SRC, 2), table(l3));
        let l3_table = table_page(pasid, 3);
        let src = src_page(pasid).address();
        let dst = dst_page(pasid).address();
        set_entry(
            l3_table,
            index(IOVA_SRC, 3),
            unikernel::smmu_tables::page(src, true),
        );
        set_entry(
            l3_table,
            index(IOVA_DST, 3),
            unikernel::smmu_tables::page(dst, false),
        );
        set_cd(pasid, cd(l1, pasid as u16));
    }
}

/// The STE words the probes attach with.
pub fn ste_words() -> (u64, u64) {
    (
        ste0(STE_CONFIG_S1_TRANSLATE, cd_table().address(), CD_MAX_BITS),
        ste1(S1DSS_BYPASS),
    )
}

/// A copy from `src` to `dst` at `pasid`.
pub fn copy(pasid: u32, src: u64, dst: u64) -> Job {
    Job {
        opcode: OP_COPY,
        flags: FLAG_PASID,
        pasid,
        src,
        dst,
        pattern: 0,
    }
}

/// A fill of `dst` with `pattern` at `pasid`.
pub fn fill(pasid: u32, dst: u64, pattern: u64) -> Job {
    Job {
        opcode: OP_FILL,
        flags: FLAG_PASID,
        pasid,
        src: 0,
        dst,
        pattern,
    }
}

/// A job's completion: status, fault flags, bytes done, fault address.
pub type Completion = (u32, u32, u64, u64);

pub struct Nested {
    pub iommu: VirtioIommu,
    pub engine: Engine,
    pub endpoint: u32,
    pub domain: u32,
    /// Jobs run since the engine was enabled.
    next: u32,
}

impl Nested {
    pub fn open(ctx: &Context) -> Result<Nested, Line> {
        Self::open_with(ctx, false)
    }

    /// With `page_requests`, the page-request records are negotiated too and the engine's
    /// PRI is enabled (allocation [`PRI_ALLOCATION`]) before the engine starts.
    pub fn open_with(ctx: &Context, page_requests: bool) -> Result<Nested, Line> {
        let fail = |why: &str| format_line!(why);
        let iommu_bdf = virtio_iommu::find().ok_or_else(|| fail("no virtio-iommu on bus 0"))?;
        let engine_bdf = find_engine().ok_or_else(|| fail("no DMA engine on bus 0"))?;
        let mut iommu = if page_requests {
            VirtioIommu::open_page_requests(iommu_bdf)?
        } else {
            VirtioIommu::open_nested(iommu_bdf)?
        };
        let endpoint = endpoint_id(engine_bdf);
        let (first, last) = iommu.domain_range();
        let domain = first + 3;
        if last < domain {
            return Err(format_line!("domain range ", first, "-", last));
        }
        let acpi = Acpi::locate(ctx.start_info.rsdp_paddr()).ok_or_else(|| fail("no ACPI"))?;
        let ecam = Ecam::from_mcfg(&acpi).ok_or_else(|| fail("no usable MCFG"))?;
        let pasid_cap = ecam
            .extended_capability(engine_bdf, PASID_CAPABILITY)
            .ok_or_else(|| fail("the DMA engine has no PASID capability"))?;
        let control = ecam.read32(engine_bdf, pasid_cap + 4);
        ecam.write32(engine_bdf, pasid_cap + 4, control | PASID_ENABLE);
        let pri_cap = ecam
            .extended_capability(engine_bdf, PRI_CAPABILITY)
            .ok_or_else(|| fail("the DMA engine has no PRI capability"))?;
        // Allocation, then Enable (or not): the engine takes both when it starts.
        let allocation = if page_requests { PRI_ALLOCATION } else { 0 };
        ecam.write32(engine_bdf, pri_cap + 0xc, allocation);
        ecam.write32(
            engine_bdf,
            pri_cap + 4,
            u32::from(page_requests) * PRI_ENABLE,
        );

        build_tables();
        let (w0, w1) = ste_words();
        iommu.expect(
            "ATTACH_TABLE",
            &attach_table_request(domain, endpoint, w0, w1),
            S_OK,
        )?;
        let apic = LocalApic::current().map_err(fail)?;
        // Vector 0 stays masked: the probes poll HEAD.
        let engine = open_engine(engine_bdf, apic.id(), TIMER_VECTOR)?;
        engine.write(CONTROL, 0);
        let ring = page(&raw mut RING).address();
        engine.write(RING_BASE_LO, ring as u32);
        engine.write(RING_BASE_HI, (ring >> 32) as u32);
        engine.write(RING_SLOTS, SLOTS);
        engine.write(CONTROL, CONTROL_ENABLE);
        if engine.read(STATUS) & (STATUS_ENABLED | STATUS_HALTED) != STATUS_ENABLED {
            return Err(format_line!("engine status ", engine.read(STATUS)));
        }
        Ok(Nested {
            iommu,
            engine,
            endpoint,
            domain,
            next: 0,
        })
    }

    /// Posts `job` moving `len` bytes in the next slot without ringing; returns its index.
    pub fn post_len(&mut self, job: Job, len: u64) -> u32 {
        let index = self.next;
        self.engine.post_len(index, job, len);
        self.next = self.next.wrapping_add(1);
        index
    }

    /// Rings the doorbell for every job posted.
    pub fn ring(&self) {
        self.engine.ring(self.next);
    }

    /// Runs one job (LEN bytes) and returns its completion.
    pub fn run(&mut self, job: Job) -> Result<Completion, Line> {
        self.engine.post(self.next, job);
        self.next = self.next.wrapping_add(1);
        self.engine.run_until(self.next)?;
        Ok(completion(self.next.wrapping_sub(1)))
    }

    /// Runs `job` and wants it to complete whole.
    pub fn run_ok(&mut self, what: &str, job: Job) -> Result<(), Line> {
        let (status, _, done, _) = self.run(job)?;
        if status != ST_OK || done != LEN as u64 {
            return Err(format_line!(what, ": status ", status, " done ", done));
        }
        Ok(())
    }

    /// Sends a request and wants `status` back.
    pub fn expect(&mut self, what: &str, request: &[u8], status: u8) -> Result<(), Line> {
        self.iommu.expect(what, request, status)
    }

    /// Stops the engine and detaches its endpoint.
    pub fn close(mut self) -> Result<(), Line> {
        self.engine.write(CONTROL, 0);
        self.iommu.detach(self.domain, self.endpoint)
    }
}

/// Whether the first LEN bytes of `page` all hold `pattern`'s bytes.
pub fn filled_with(page: &Page, pattern: u64) -> bool {
    let bytes = pattern.to_le_bytes();
    page.0[..LEN].chunks(8).all(|c| c == bytes)
}
