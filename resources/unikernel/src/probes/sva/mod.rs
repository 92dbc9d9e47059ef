//! The page-request probes: nestor's DMA engine, with PRI enabled, asks the virtio-iommu
//! (nested mode, page requests negotiated) for the pages its jobs miss, and this guest
//! answers them as an SVA driver's fault handler would: it maps the page in the PASID's
//! stage-1 tables, invalidates the ASID's TLB entries and answers with PAGE_RESP (both
//! requests behind one notification), or refuses, or stays silent.
//!
//! [`Sva::open`] starts from [`Nested::open_with`] (PASIDs 1 and 2 with their tables) and
//! adds PASID 3; every CD has R clear, so a miss reaches the guest as a page request only.
//! The jobs' pages start at [`IOVA_SVA`], unmapped, in the same level-3 tables; the pages
//! the guest maps there come from a pool.

pub mod burst;
pub mod no_answer;
pub mod page_deny;
pub mod page_request;

use super::dma_engine::completion;
use super::nested::{set_cd, set_entry, table_page, Nested};
use super::Context;
use crate::clock::Deadline;
use crate::virtio_iommu::invalidate::{CACHE_CD, CACHE_TLB, FLAG_ASID, SCOPE_DOMAIN};
use crate::virtio_iommu::{
    page_resp_request, FaultRecord, Invalidate, FAULT_F_LAST_PAGE, FAULT_F_PASID, FAULT_F_WRITE,
    FAULT_R_PAGE_REQUEST, RESP_FAILURE, RESP_SUCCESS, S_OK,
};
use crate::virtio_pci::Page;
use unikernel::format_line;
use unikernel::smmu_tables::{cd_with, index, table};
use unikernel::text::{hex, Line};

/// Where the probes' jobs go: level-3 entry 16 on, unmapped until asked for.
pub const IOVA_SVA: u64 = 0x4001_0000;
/// Pages from IOVA_SVA a job may touch (the level-3 table ends at entry 511).
pub const SVA_PAGES: u64 = 128;
/// Pages the guest can map.
const POOL_PAGES: usize = 200;

/// PASID 3's levels 1, 2 and 3.
static mut PASID3: [Page; 3] = [Page::ZERO; 3];
static mut POOL: [Page; POOL_PAGES] = [Page::ZERO; POOL_PAGES];

fn page_of<const N: usize>(pages: *mut [Page; N], i: usize) -> &'static mut Page {
    // SAFETY: only the single-threaded page-request probes touch these pages; the device
    // reads and writes them only while a probe waits for it.
    unsafe { &mut (*pages)[i] }
}

fn pasid3(level: u32) -> &'static mut Page {
    page_of(&raw mut PASID3, level as usize - 1)
}

/// Pool page `i`.
pub fn pool(i: usize) -> &'static mut Page {
    page_of(&raw mut POOL, i)
}

/// The level-3 table of `pasid` (1 to 3).
fn level3(pasid: u32) -> &'static mut Page {
    match pasid {
        3 => pasid3(3),
        p => table_page(p, 3),
    }
}

/// The 64-bit word at guest-physical `at` (identity-mapped).
pub fn word_at(at: u64) -> u64 {
    // SAFETY: `at` is in a pool page, which this probe owns.
    unsafe { core::ptr::read_volatile(at as *const u64) }
}

/// Where `iova` of `pasid` is mapped, if it is.
pub fn mapped_at(pasid: u32, iova: u64) -> Option<u64> {
    let entry = unikernel::le::get64(&level3(pasid).0, index(iova, 3) * 8);
    (entry & 0b11 == 0b11).then_some(entry & 0x0000_ffff_ffff_f000)
}

/// What the guest does with one page request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Map the page onto this guest-physical page; the group succeeds if all its pages do.
    Map(u64),
    /// The group fails.
    Refuse,
    /// Never answer the group.
    Ignore,
}

/// What serving a job's page requests took.
#[derive(Default, Clone, Copy)]
pub struct Served {
    pub requests: u32,
    pub reads: u32,
    pub writes: u32,
    /// Groups answered.
    pub groups: u32,
    /// Records that were not this engine's page requests (lost-record markers included).
    pub other_records: u32,
    /// Notifications sent meanwhile: each one guest exit.
    pub exits: u64,
    /// The last group seen: (PASID, group).
    pub last_group: (Option<u32>, u32),
}

pub struct Sva {
    pub n: Nested,
    /// Pool pages handed out.
    next_pool: usize,
}

impl Sva {
    pub fn open(ctx: &Context) -> Result<Sva, Line> {
        let mut n = Nested::open_with(ctx, true)?;
        for level in 1..=3 {
            pasid3(level).0.fill(0);
        }
        set_entry(pasid3(1), index(IOVA_SVA, 1), table(pasid3(2).address()));
        set_entry(pasid3(2), index(IOVA_SVA, 2), table(pasid3(3).address()));
        for pasid in 1..=3u32 {
            let l1 = match pasid {
                3 => pasid3(1).address(),
                p => table_page(p, 1).address(),
            };
            set_cd(pasid, cd_with(l1, pasid as u16, false));
        }
        let all_cds = Invalidate {
            scope: SCOPE_DOMAIN,
            caches: CACHE_CD,
            domain: n.domain,
            ..Invalidate::default()
        };
        n.expect("INVALIDATE CDs", &all_cds.bytes(), S_OK)?;
        Ok(Sva { n, next_pool: 0 })
    }

    /// The next pool page, zeroed.
    pub fn take_page(&mut self) -> Result<u64, Line> {
        if self.next_pool == POOL_PAGES {
            return Err(format_line!("the page pool ran out"));
        }
        let p = pool(self.next_pool);
        self.next_pool += 1;
        p.0.fill(0);
        Ok(p.address())
    }

    fn map(&mut self, pasid: u32, iova: u64, phys: u64) -> Result<(), Line> {
        if !(1..=3).contains(&pasid) || !(IOVA_SVA..IOVA_SVA + (SVA_PAGES << 12)).contains(&iova) {
            return Err(format_line!(
                "page request for PASID ",
                pasid,
                " at ",
                hex(iova, 16)
            ));
        }
        if mapped_at(pasid, iova).is_some() {
            return Err(format_line!("page ", hex(iova, 16), " requested twice"));
        }
        set_entry(
            level3(pasid),
            index(iova, 3),
            unikernel::smmu_tables::page(phys, false),
        );
        Ok(())
    }

    /// Answers group `group`: on success the ASID's TLB entries are invalidated first,
    /// in the same notification.
    pub fn respond(&mut self, pasid: Option<u32>, group: u32, code: u16) -> Result<(), Line> {
        let resp = page_resp_request(self.n.endpoint, pasid, group, code);
        if code != RESP_SUCCESS {
            return self.n.expect("PAGE_RESP", &resp, S_OK);
        }
        let tlb = Invalidate {
            scope: SCOPE_DOMAIN,
            caches: CACHE_TLB,
            flags: FLAG_ASID,
            domain: self.n.domain,
            asid: pasid.unwrap_or(0) as u16,
            ..Invalidate::default()
        };
        let (invalidated, answered) = self.n.iommu.request_pair(&tlb.bytes(), &resp)?;
        if invalidated != S_OK || answered != S_OK {
            return Err(format_line!(
                "INVALIDATE status ",
                invalidated,
                ", PAGE_RESP status ",
                answered
            ));
        }
        Ok(())
    }

    /// Serves page requests with `answer` until job `job` has its completion, or `ms`
    /// of TSC time passed.
    pub fn serve_until(
        &mut self,
        job: u32,
        ms: u64,
        mut answer: impl FnMut(&mut Sva, &FaultRecord) -> Result<Answer, Line>,
    ) -> Result<Served, Line> {
        let deadline = Deadline::after_ms(ms);
        let kicks = self.n.iommu.kicks;
        let mut served = Served::default();
        // Groups with a refused page, by PRG index.
        let mut refused = [false; 512];
        loop {
            let mut taken = false;
            while let Some(record) = self.n.iommu.take_record() {
                taken = true;
                let r = record?;
                if r.reason != FAULT_R_PAGE_REQUEST || r.endpoint != self.n.endpoint {
                    served.other_records += 1;
                    continue;
                }
                served.requests += 1;
                if r.flags & FAULT_F_WRITE != 0 {
                    served.writes += 1;
                } else {
                    served.reads += 1;
                }
                let pasid = (r.flags & FAULT_F_PASID != 0).then_some(r.pasid);
                let g = (r.group & 0x1ff) as usize;
                served.last_group = (pasid, r.group);
                match answer(self, &r)? {
                    Answer::Map(phys) => self.map(pasid.unwrap_or(0), r.address, phys)?,
                    Answer::Refuse => refused[g] = true,
                    Answer::Ignore => continue,
                }
                if r.flags & FAULT_F_LAST_PAGE != 0 {
                    let code = if refused[g] {
                        RESP_FAILURE
                    } else {
                        RESP_SUCCESS
                    };
                    refused[g] = false;
                    self.respond(pasid, r.group, code)?;
                    served.groups += 1;
                }
            }
            if taken {
                self.n.iommu.kick_events();
            }
            if completion(job).0 != 0 {
                break;
            }
            if deadline.passed() {
                return Err(format_line!(
                    "job ",
                    job,
                    " never completed; page requests seen ",
                    served.requests
                ));
            }
            core::hint::spin_loop();
        }
        served.exits = self.n.iommu.kicks - kicks;
        Ok(served)
    }
}

/// The completion of job `index` is (status, flags, done, fault address) = `want`.
pub fn expect_completion(what: &str, index: u32, want: (u32, u32, u64, u64)) -> Result<(), Line> {
    let got = completion(index);
    if got != want {
        return Err(format_line!(
            what,
            ": status ",
            got.0,
            " flags ",
            got.1,
            " done ",
            got.2,
            " at ",
            hex(got.3, 16)
        ));
    }
    Ok(())
}
