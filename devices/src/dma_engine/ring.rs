//! The engine's work loop, run on its worker thread: take the jobs between head and the
//! doorbell's tail, run each, write its completion back into its slot, advance the head, and
//! raise the completion interrupt.
//!
//! Everything it reads is the guest's: a tail further than a ring past the head, a slot the
//! engine cannot read or complete, halt the engine (the driver sees HALTED and ERROR) rather
//! than guess. A call serves at most its budget of jobs, each at most `MAX_JOB_LEN` bytes,
//! so a doorbell cannot keep the worker from seeing its stop flag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::descriptor::{
    Completion, Job, JobDescriptor, JobStatus, COMPLETION_OFFSET, FAULT_WRITE, JOB_DESCRIPTOR_SIZE,
};
use super::job::{run_job, JobBuffers};
use super::page_requests::{PageRequester, Refusal, WaitingJob};
use super::registers::{HaltReason, RingConfig, COMPLETION_VECTOR};
use crate::dma::DmaMemory;
use crate::io_counters::IoCounters;
use crate::pci::SharedMsix;
use crate::virtio::worker::QueueHandler;

/// What one enabling of the engine shares between the function (registers) and the worker.
#[derive(Debug, Default)]
pub struct Progress {
    /// The last tail the driver rang.
    pub tail: AtomicU32,
    /// Jobs completed.
    pub head: AtomicU32,
    /// A [`HaltReason`], or 0.
    pub halted: AtomicU32,
}

impl Progress {
    pub fn halt(&self, reason: HaltReason) {
        // The first reason stays: later ones follow from it.
        let _ = self
            .halted
            .compare_exchange(0, reason as u32, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn is_halted(&self) -> bool {
        self.halted.load(Ordering::Acquire) != 0
    }
}

/// The worker's side of one enabling.
pub struct RingRunner {
    ring: RingConfig,
    mem: DmaMemory,
    progress: Arc<Progress>,
    msix: SharedMsix,
    buffers: JobBuffers,
    /// Jobs may carry a PASID, and their accesses are tagged with it.
    serves_pasids: bool,
    /// The head as the worker knows it; published to `progress` after each completion.
    head: u32,
    counters: Arc<IoCounters>,
    /// PRI enabled: pages the waiting jobs miss are asked for before they run.
    page_requests: Option<PageRequester>,
    /// Jobs (by ring index) whose pages were refused.
    refused: HashMap<u32, Refusal>,
}

/// Counts a completed job: the bytes it read from and wrote to guest memory.
fn count(counters: &IoCounters, job: Option<&Job>, completion: &Completion) {
    counters.request(completion.status == JobStatus::Ok as u32);
    match job {
        Some(Job::Copy { .. }) => {
            counters.read(completion.bytes_done);
            counters.written(completion.bytes_done);
        }
        Some(Job::Fill { .. }) => counters.written(completion.bytes_done),
        None => {}
    }
}

impl RingRunner {
    /// `ring` must have passed [`RingConfig::validate`].
    pub fn new(
        ring: RingConfig,
        mem: DmaMemory,
        progress: Arc<Progress>,
        msix: SharedMsix,
    ) -> Self {
        let head = progress.head.load(Ordering::Acquire);
        Self {
            ring,
            mem,
            progress,
            msix,
            buffers: JobBuffers::default(),
            serves_pasids: false,
            head,
            counters: Arc::default(),
            page_requests: None,
            refused: HashMap::new(),
        }
    }

    /// Counts the jobs this runner completes in `counters`.
    pub fn counting(mut self, counters: Arc<IoCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// Serve jobs that carry a PASID (nested translation, PASID Enable set).
    pub fn with_pasids(mut self, serves_pasids: bool) -> Self {
        self.serves_pasids = serves_pasids;
        self
    }

    /// Ask for the pages jobs miss before running them (PRI enabled).
    pub fn with_page_requests(mut self, requester: Option<PageRequester>) -> Self {
        self.page_requests = requester;
        self
    }

    fn descriptor(&self, index: u32) -> Result<JobDescriptor, HaltReason> {
        let slot = self.ring.slot_address(index);
        let mut bytes = [0u8; JOB_DESCRIPTOR_SIZE];
        self.mem
            .read_slice(&mut bytes, GuestAddress(slot))
            .map_err(|_| HaltReason::RingFault)?;
        Ok(JobDescriptor::from_le_bytes(&bytes))
    }

    /// Asks for the pages the next `count` jobs miss; false if the engine was reset while
    /// it waited.
    fn fault_in(&mut self, count: u32) -> bool {
        let Some(requester) = &self.page_requests else {
            return true;
        };
        let jobs: Vec<WaitingJob> = (0..count)
            .map(|i| self.head.wrapping_add(i))
            .filter_map(|index| {
                // A slot that cannot be read halts the engine when its turn comes.
                let descriptor = self.descriptor(index).ok()?;
                let job = descriptor.validate_for(self.serves_pasids).ok()?;
                Some((index, job, descriptor.pasid_tag()))
            })
            .collect();
        match requester.fault_in(&self.mem, &jobs) {
            Ok(refused) => {
                self.refused = refused;
                true
            }
            Err(_) => false,
        }
    }

    /// Runs the job in the next slot and writes its completion; `Ok(interrupt wanted)`.
    fn serve_one(&mut self) -> Result<bool, HaltReason> {
        let slot = self.ring.slot_address(self.head);
        let descriptor = self.descriptor(self.head)?;
        let job = descriptor.validate_for(self.serves_pasids);
        let refusal = self.refused.remove(&self.head);
        let completion = match (&job, refusal) {
            (Ok(_), Some(refusal)) => Completion {
                status: JobStatus::PageRequestFailed as u32,
                fault_flags: if refusal.write { FAULT_WRITE } else { 0 },
                bytes_done: 0,
                fault_address: refusal.address,
            },
            (Ok(job), None) => match descriptor.pasid_tag() {
                None => run_job(&self.mem, job, &mut self.buffers),
                pasid => run_job(&self.mem.with_pasid(pasid), job, &mut self.buffers),
            },
            (Err(status), _) => Completion::refused(*status),
        };
        self.mem
            .write_slice(
                &completion.to_le_bytes(),
                GuestAddress(slot + COMPLETION_OFFSET),
            )
            .map_err(|_| HaltReason::RingFault)?;
        count(&self.counters, job.as_ref().ok(), &completion);
        self.head = self.head.wrapping_add(1);
        // Published only while the enabling is live: once a disable or reset returns, the
        // head the driver reads no longer moves.
        let (progress, head) = (&self.progress, self.head);
        self.mem
            .while_live(|| progress.head.store(head, Ordering::Release));
        Ok(descriptor.wants_interrupt())
    }

    fn interrupt(&self) {
        // An MSI is a memory write: held while bus mastering is off, dropped once revoked.
        self.mem.while_live(|| {
            self.msix
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .trigger(COMPLETION_VECTOR)
        });
    }

    /// Serves up to `budget` jobs; returns whether more are waiting.
    pub fn serve(&mut self, budget: usize) -> bool {
        if self.progress.is_halted() || self.mem.is_revoked() {
            return false;
        }
        let mut interrupt = false;
        let mut served = 0;
        let mut budget = budget;
        if self.page_requests.is_some() {
            let waiting = self
                .progress
                .tail
                .load(Ordering::Acquire)
                .wrapping_sub(self.head);
            if waiting <= self.ring.slots {
                // Only the jobs whose pages were asked for run in this call.
                let window = waiting.min(budget as u32);
                if !self.fault_in(window) {
                    return false;
                }
                budget = window as usize;
            }
        }
        let more = loop {
            let tail = self.progress.tail.load(Ordering::Acquire);
            let waiting = tail.wrapping_sub(self.head);
            if waiting == 0 {
                break false;
            }
            if waiting > self.ring.slots {
                self.progress.halt(HaltReason::BadDoorbell);
                interrupt = true;
                break false;
            }
            if served == budget {
                break true;
            }
            match self.serve_one() {
                Ok(wanted) => interrupt |= wanted,
                Err(reason) => {
                    if !self.mem.is_revoked() {
                        self.progress.halt(reason);
                        interrupt = true;
                    }
                    break false;
                }
            }
            served += 1;
        };
        if interrupt {
            self.interrupt();
        }
        more
    }
}

impl QueueHandler for RingRunner {
    fn process_queue(&mut self, _doorbell: usize, budget: usize) -> bool {
        self.serve(budget)
    }
}
