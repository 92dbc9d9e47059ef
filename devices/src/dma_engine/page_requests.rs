//! The engine's page requests (PCIe PRI), once the guest enabled PRI with a non-zero
//! allocation and the engine sits behind the virtio-iommu in nested mode.
//!
//! Before the jobs waiting in the ring run, the engine asks of each page they touch, as an
//! ATS Translation Request would, whether it translates. The pages that do not are asked
//! for in page request groups, one per job, with at most the PRI capability's allocation
//! outstanding at once; the engine waits for the responses holding no lock (a reset ends
//! the wait). A job whose group fails, or is not answered in time, fails with
//! PAGE_REQUEST_FAILED having written nothing; the others run, which is their one retry: a
//! page still missing then fails the job with TRANSLATION_FAULT.

use std::collections::HashMap;
use std::time::Instant;

use vm_memory::Permissions;

use super::descriptor::Job;
use crate::dma::DmaMemory;
use crate::host_iommu::smmuv3::wire::PriEntry;
use crate::pri::{GroupOutcome, PriLink};

/// PRI pages are 4 KiB whatever the IOMMU's granule.
const PAGE: u64 = 4096;

/// Why a job may not run: the first access whose page was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub address: u64,
    pub write: bool,
}

/// The engine was reset while it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

/// A page a job needs and cannot reach.
#[derive(Debug, Clone, Copy)]
struct Need {
    job: u32,
    pasid: Option<u32>,
    /// The first address of the job's access in the page.
    address: u64,
    write: bool,
}

/// A job waiting in the ring: its index, what it does, its PASID.
pub type WaitingJob = (u32, Job, Option<u32>);

/// One enabling's page requests.
#[derive(Debug)]
pub struct PageRequester {
    link: PriLink,
    /// Outstanding page requests allowed (the capability's allocation register).
    allocation: usize,
    /// The responses' epoch when the enabling began: a reset ends it.
    epoch: u64,
}

/// The ranges a job touches: (start, length, write).
fn accesses(job: &Job) -> Vec<(u64, u64, bool)> {
    match *job {
        Job::Copy {
            source,
            destination,
            length,
        } => vec![(source, length, false), (destination, length, true)],
        Job::Fill {
            destination,
            length,
            ..
        } => vec![(destination, length, true)],
    }
}

impl PageRequester {
    /// `None` with a zero allocation: the engine may not ask for pages.
    pub fn new(link: PriLink, allocation: u32) -> Option<Self> {
        let epoch = link.responses.epoch();
        (allocation > 0).then_some(Self {
            link,
            allocation: allocation as usize,
            epoch,
        })
    }

    /// The pages of `jobs` that do not translate now, in job order.
    fn missing(mem: &DmaMemory, jobs: &[WaitingJob]) -> Vec<Need> {
        let mut needs = Vec::new();
        for &(job, ref work, pasid) in jobs {
            let view = mem.with_pasid(pasid);
            for (start, length, write) in accesses(work) {
                let access = if write {
                    Permissions::Write
                } else {
                    Permissions::Read
                };
                // Validation keeps every range below 2^64.
                let end = start + length;
                let mut address = start;
                while address < end {
                    let page_end = (address & !(PAGE - 1)).saturating_add(PAGE).min(end);
                    if !view.translates(address, page_end - address, access) {
                        needs.push(Need {
                            job,
                            pasid,
                            address,
                            write,
                        });
                    }
                    address = page_end;
                }
            }
        }
        needs
    }

    /// Asks for the pages `jobs` need and cannot reach; returns the jobs that may not run.
    pub fn fault_in(
        &self,
        mem: &DmaMemory,
        jobs: &[WaitingJob],
    ) -> Result<HashMap<u32, Refusal>, Abandoned> {
        let mut refused = HashMap::new();
        let needs = Self::missing(mem, jobs);
        for wave in needs.chunks(self.allocation) {
            let mut groups = Vec::new();
            for run in wave.chunk_by(|a, b| a.job == b.job) {
                let first = run[0];
                if refused.contains_key(&first.job) {
                    continue;
                }
                let refusal = Refusal {
                    address: first.address,
                    write: first.write,
                };
                let Some(index) = self.link.responses.reserve(first.pasid) else {
                    refused.entry(first.job).or_insert(refusal);
                    continue;
                };
                for (i, need) in run.iter().enumerate() {
                    self.link.port.page_request(PriEntry::new(
                        self.link.stream,
                        need.pasid,
                        need.address,
                        index,
                        !need.write,
                        need.write,
                        i + 1 == run.len(),
                    ));
                }
                groups.push((index, first.job, refusal));
            }
            let indices: Vec<u16> = groups.iter().map(|g| g.0).collect();
            let deadline = Instant::now() + self.link.wait_limit;
            let outcomes = self.link.responses.wait(&indices, deadline, self.epoch);
            for ((_, job, refusal), outcome) in groups.into_iter().zip(outcomes) {
                match outcome {
                    GroupOutcome::Success => {}
                    GroupOutcome::Abandoned => return Err(Abandoned),
                    GroupOutcome::Failure | GroupOutcome::TimedOut => {
                        refused.entry(job).or_insert(refusal);
                    }
                }
            }
        }
        Ok(refused)
    }
}
