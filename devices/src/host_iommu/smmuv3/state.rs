//! The model's mutable state, behind one lock: where streams are configured, the
//! configuration caches, the TLB, the queues and the stalled transactions.

use super::caps::Smmuv3Caps;
use super::event_queue::EventQueue;
use super::fast_hash::IntMap;
use super::pri_queue::PriQueue;
use super::recent::RecentTranslations;
use super::stage1::ContextConfig;
use super::stall::Stalls;
use super::stream::StreamConfig;
use super::stream_table::StreamTableConfig;
use super::tlb::Tlb;
use super::wire::Ste;

#[derive(Debug)]
pub(crate) struct State {
    pub stream_table: Option<StreamTableConfig>,
    /// STEs given directly (the nested back-end's installed configurations); they take
    /// precedence over the stream table.
    pub installed: IntMap<u32, Ste>,
    /// Cached STEs, by StreamID.
    pub streams: IntMap<u32, StreamConfig>,
    /// Cached CDs, by StreamID and CD index.
    pub contexts: IntMap<(u32, u32), ContextConfig>,
    pub tlb: Tlb,
    /// Stage-2 walk cache: the last-level table of an IPA region, by VMID, granule and
    /// region (the IPA above the last level's bits). Invalidated with the VMID's stage-2
    /// translations.
    pub s2_tables: IntMap<(u16, u32, u64), u64>,
    pub recent: RecentTranslations,
    pub events: EventQueue,
    pub pri: PriQueue,
    pub stalls: Stalls,
    /// CMD_SYNC completion writes that found no memory.
    pub sync_write_failures: u64,
}

impl State {
    pub fn new(caps: &Smmuv3Caps) -> Self {
        Self {
            stream_table: None,
            installed: IntMap::default(),
            streams: IntMap::default(),
            contexts: IntMap::default(),
            tlb: Tlb::new(caps.tlb_entries),
            s2_tables: IntMap::default(),
            recent: RecentTranslations::default(),
            events: EventQueue::new(caps.event_queue_depth),
            pri: PriQueue::new(caps.pri_queue_depth),
            stalls: Stalls::new(caps.max_stalls),
            sync_write_failures: 0,
        }
    }

    /// Forgets the cached STEs (and with them the CDs) of the streams `matches` picks.
    pub fn forget_streams(&mut self, matches: impl Fn(u32) -> bool) {
        self.streams.retain(|&sid, _| !matches(sid));
        self.contexts.retain(|&(sid, _), _| !matches(sid));
        self.recent.invalidate_all();
    }
}
