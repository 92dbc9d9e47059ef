//! The translation pipeline: STE (cached), then the substream's CD (cached), then the TLB,
//! and on a miss the stage-1 walk, each of whose table reads (and the CD fetch) goes
//! through stage 2 when the stream is nested, then stage 2 for the output.

use vm_memory::GuestMemory;

use super::access::{Access, AllowedAccesses};
use super::caps::Smmuv3Caps;
use super::cd_table::{self, CdLocateError, Substream};
use super::fault::{Failure, FaultAddress, FaultPolicy, WalkFault};
use super::memory::{read_64, read_descriptor};
use super::stage1::{self, ContextConfig};
use super::stage2::{self, Stage2Config};
use super::state::State;
use super::stream::{Stage1Stream, StreamConfig, TranslateConfig};
use super::stream_table::LocateError;
use super::tlb::TlbTag;
use super::translation::Translation;
use super::walk::{walk, walk_from, Leaf, WalkError};
use super::wire::{event_id, Cd, EventRecord, FaultClass, Ste};

/// One transaction to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    /// StreamID: the endpoint.
    pub sid: u32,
    /// SubstreamID (PASID), if the transaction carries one.
    pub ssid: Option<u32>,
    /// Input address (IOVA).
    pub address: u64,
    pub access: Access,
}

/// Why a descriptor fetch of a stage-1 walk failed.
enum FetchError {
    /// Stage 2 could not translate the table's IPA.
    Stage2(WalkFault),
    /// Nothing readable at this (physical) address.
    External(u64),
}

/// Configuration caches hold at most this many entries before starting over.
const MAX_CACHED_CONFIGS: usize = 4096;

fn config_event(id: u8, t: &Transaction) -> Failure {
    Failure::Config(EventRecord::new(id, t.sid).with_substream(t.ssid))
}

impl State {
    /// Translates `t`, or says why not (recording and stalling are the caller's).
    pub(crate) fn translate_uncached<M: GuestMemory + ?Sized>(
        &mut self,
        memory: &M,
        caps: &Smmuv3Caps,
        t: &Transaction,
    ) -> Result<Translation, Failure> {
        let config = match self.stream(memory, caps, t)? {
            StreamConfig::Abort => return Err(Failure::Silent),
            StreamConfig::Bypass => return Ok(identity()),
            StreamConfig::Translate(config) => config,
        };
        let context = match &config.stage1 {
            None => None,
            Some(s1) => match cd_table::select(s1, t.ssid) {
                Err(_) => return Err(config_event(event_id::C_BAD_SUBSTREAMID, t)),
                Ok(Substream::Disabled) => {
                    return Err(config_event(event_id::F_STREAM_DISABLED, t))
                }
                Ok(Substream::BypassStage1) => None,
                Ok(Substream::Cd(index)) => {
                    Some(self.context(memory, caps, t, &config, s1, index)?)
                }
            },
        };
        match (context, &config.stage2) {
            (Some(ctx), s2) => self.stage1_translate(memory, t, &config, &ctx, s2.as_ref()),
            (None, Some(s2)) => self
                .stage2_translate(memory, s2, t.address, t.access, FaultClass::Input, true)
                .map_err(Failure::Walk),
            (None, None) => Ok(identity()),
        }
    }

    fn stream<M: GuestMemory + ?Sized>(
        &mut self,
        memory: &M,
        caps: &Smmuv3Caps,
        t: &Transaction,
    ) -> Result<StreamConfig, Failure> {
        if let Some(config) = self.streams.get(&t.sid) {
            return Ok(*config);
        }
        let ste = match self.installed.get(&t.sid) {
            Some(ste) => *ste,
            None => self.fetch_ste(memory, caps, t)?,
        };
        let config = StreamConfig::from_ste(&ste, caps)
            .ok_or_else(|| config_event(event_id::C_BAD_STE, t))?;
        if self.streams.len() >= MAX_CACHED_CONFIGS {
            self.streams.clear();
        }
        self.streams.insert(t.sid, config);
        Ok(config)
    }

    fn fetch_ste<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        caps: &Smmuv3Caps,
        t: &Transaction,
    ) -> Result<Ste, Failure> {
        let table = self
            .stream_table
            .ok_or_else(|| config_event(event_id::C_BAD_STREAMID, t))?;
        let fetch_failed = |address| {
            Failure::Config(
                EventRecord::new(event_id::F_STE_FETCH, t.sid)
                    .with_substream(t.ssid)
                    .with_fetch_address(address),
            )
        };
        let address = table
            .ste_address(t.sid, caps.sid_bits, |a| read_descriptor(memory, a))
            .map_err(|e| match e {
                LocateError::BadStreamId => config_event(event_id::C_BAD_STREAMID, t),
                LocateError::Fetch(address) => fetch_failed(address),
            })?;
        let bytes = read_64(memory, address).ok_or_else(|| fetch_failed(address))?;
        Ste::from_le_bytes(&bytes).ok_or_else(|| fetch_failed(address))
    }

    fn context<M: GuestMemory + ?Sized>(
        &mut self,
        memory: &M,
        caps: &Smmuv3Caps,
        t: &Transaction,
        config: &TranslateConfig,
        s1: &Stage1Stream,
        index: u32,
    ) -> Result<ContextConfig, Failure> {
        if let Some(ctx) = self.contexts.get(&(t.sid, index)) {
            return Ok(*ctx);
        }
        let cd_fetch_failed = |address| {
            Failure::Config(
                EventRecord::new(event_id::F_CD_FETCH, t.sid)
                    .with_substream(t.ssid)
                    .with_fetch_address(address),
            )
        };
        // CD-table addresses are IPAs when stage 2 translates: a stage-2 fault there is
        // reported with CLASS = CD and never stalls.
        let to_physical = |state: &mut State, ipa: u64| -> Result<u64, Failure> {
            match &config.stage2 {
                None => Ok(ipa),
                Some(s2) => state
                    .stage2_translate(memory, s2, ipa, Access::READ, FaultClass::Cd, false)
                    .map(|tr| tr.output_of(ipa))
                    .map_err(Failure::Walk),
            }
        };
        let mut failure = None;
        let located = cd_table::cd_address(s1, index, |l1_ipa| {
            let pa = to_physical(self, l1_ipa).map_err(|f| failure = Some(f))?;
            read_descriptor(memory, pa).ok_or_else(|| failure = Some(cd_fetch_failed(pa)))
        });
        let address = match located {
            Ok(a) => a,
            Err(CdLocateError::BadSubstream) => {
                return Err(config_event(event_id::C_BAD_SUBSTREAMID, t))
            }
            Err(CdLocateError::Fetch { address, .. }) => {
                return Err(failure.unwrap_or_else(|| cd_fetch_failed(address)))
            }
        };
        let pa = to_physical(self, address)?;
        let bytes = read_64(memory, pa).ok_or_else(|| cd_fetch_failed(pa))?;
        let cd = Cd::from_le_bytes(&bytes).ok_or_else(|| cd_fetch_failed(pa))?;
        let ctx = ContextConfig::from_cd(&cd, caps, s1.stalls_disabled)
            .ok_or_else(|| config_event(event_id::C_BAD_CD, t))?;
        if self.contexts.len() >= MAX_CACHED_CONFIGS {
            self.contexts.clear();
        }
        self.contexts.insert((t.sid, index), ctx);
        Ok(ctx)
    }

    fn stage1_translate<M: GuestMemory + ?Sized>(
        &mut self,
        memory: &M,
        t: &Transaction,
        config: &TranslateConfig,
        ctx: &ContextConfig,
        s2: Option<&Stage2Config>,
    ) -> Result<Translation, Failure> {
        let nested = s2.is_some();
        if let Some(hit) = self
            .tlb
            .lookup_stage1(config.vmid, ctx.asid, nested, t.address)
        {
            if hit.permits(t.access) {
                return Ok(hit);
            }
        }
        let policy = FaultPolicy {
            stall: ctx.stall,
            record: ctx.record,
            abort: ctx.abort,
        };
        let s1_fault = |id| {
            Failure::Walk(WalkFault {
                id,
                stage2: false,
                class: FaultClass::Input,
                address: FaultAddress::None,
                policy,
            })
        };
        let Some((region, input)) = ctx.region(t.address) else {
            return Err(s1_fault(event_id::F_TRANSLATION));
        };
        let region = *region;
        let leaf = {
            let mut fetch = |address: u64| -> Result<u64, FetchError> {
                let pa = match s2 {
                    None => address,
                    Some(s2) => self
                        .stage2_translate(
                            memory,
                            s2,
                            address,
                            Access::READ,
                            FaultClass::TranslationTable,
                            true,
                        )
                        .map_err(FetchError::Stage2)?
                        .output_of(address),
                };
                read_descriptor(memory, pa).ok_or(FetchError::External(pa))
            };
            walk(&region.walk, input, &mut fetch)
        };
        let leaf = match leaf {
            Ok(leaf) => leaf,
            Err(WalkError::Translation { .. }) => return Err(s1_fault(event_id::F_TRANSLATION)),
            Err(WalkError::AddressSize { .. }) => return Err(s1_fault(event_id::F_ADDR_SIZE)),
            Err(WalkError::Fetch {
                error: FetchError::Stage2(f),
                ..
            }) => return Err(Failure::Walk(f)),
            Err(WalkError::Fetch {
                error: FetchError::External(pa),
                ..
            }) => {
                return Err(Failure::Walk(WalkFault {
                    id: event_id::F_WALK_EABT,
                    stage2: false,
                    class: FaultClass::TranslationTable,
                    address: FaultAddress::Fetch(pa),
                    policy,
                }))
            }
        };
        if !leaf.descriptor.access_flag() && !ctx.access_flag_faults_disabled {
            return Err(s1_fault(event_id::F_ACCESS));
        }
        let allowed = stage1::permitted(&leaf, &region, ctx.wxn);
        if !allowed.permits(t.access) {
            return Err(s1_fault(event_id::F_PERMISSION));
        }
        let translation = match s2 {
            None => Translation::around(t.address, leaf.output, leaf.size_bits, allowed),
            Some(s2) => {
                let ipa = leaf.output;
                let s2t = self
                    .stage2_translate(memory, s2, ipa, t.access, FaultClass::Input, true)
                    .map_err(Failure::Walk)?;
                combine(t.address, &leaf, allowed, ipa, &s2t)
            }
        };
        let asid = leaf.descriptor.not_global().then_some(ctx.asid);
        self.tlb
            .insert(config.vmid, TlbTag::Stage1 { asid, nested }, translation);
        Ok(translation)
    }

    /// Stage 2 for `ipa`: from the TLB, or walked and cached. `may_stall`: false for CD
    /// fetches, whose faults never stall.
    fn stage2_translate<M: GuestMemory + ?Sized>(
        &mut self,
        memory: &M,
        s2: &Stage2Config,
        ipa: u64,
        access: Access,
        class: FaultClass,
        may_stall: bool,
    ) -> Result<Translation, WalkFault> {
        let fault = |id, address| WalkFault {
            id,
            stage2: true,
            class,
            address,
            policy: FaultPolicy {
                stall: s2.stall && may_stall,
                record: s2.record,
                abort: true,
            },
        };
        if !s2.covers(ipa) {
            return Err(fault(event_id::F_TRANSLATION, FaultAddress::Ipa(ipa)));
        }
        if let Some(hit) = self.tlb.lookup_stage2(s2.vmid, ipa) {
            if hit.permits(access) {
                return Ok(hit);
            }
        }
        // The walk cache skips to the last-level table when an earlier walk of the same
        // region found it.
        let granule = s2.walk.granule;
        let region = (s2.vmid, granule.bits(), ipa >> granule.level_shift(2));
        let fetch = &mut |a| read_descriptor(memory, a).ok_or(());
        let leaf = match self.s2_tables.get(&region) {
            Some(&table) if s2.walk.start_level < 3 => walk_from(&s2.walk, 3, table, ipa, fetch),
            _ => walk(&s2.walk, ipa, fetch),
        };
        if let Ok(leaf) = &leaf {
            if leaf.level == 3 && s2.walk.start_level < 3 {
                if self.s2_tables.len() >= MAX_CACHED_CONFIGS {
                    self.s2_tables.clear();
                }
                self.s2_tables.insert(region, leaf.table);
            }
        }
        let leaf = match leaf {
            Ok(leaf) => leaf,
            Err(WalkError::Translation { .. }) => {
                return Err(fault(event_id::F_TRANSLATION, FaultAddress::Ipa(ipa)))
            }
            Err(WalkError::AddressSize { .. }) => {
                return Err(fault(event_id::F_ADDR_SIZE, FaultAddress::Ipa(ipa)))
            }
            Err(WalkError::Fetch { address, .. }) => {
                return Err(fault(event_id::F_WALK_EABT, FaultAddress::Fetch(address)))
            }
        };
        if !leaf.descriptor.access_flag() && !s2.access_flag_faults_disabled {
            return Err(fault(event_id::F_ACCESS, FaultAddress::Ipa(ipa)));
        }
        let allowed = stage2::permitted(&leaf);
        if !allowed.permits(access) {
            return Err(fault(event_id::F_PERMISSION, FaultAddress::Ipa(ipa)));
        }
        let translation = Translation::around(ipa, leaf.output, leaf.size_bits, allowed);
        self.tlb.insert(s2.vmid, TlbTag::Stage2, translation);
        Ok(translation)
    }
}

/// Everything, untranslated.
fn identity() -> Translation {
    Translation::around(0, 0, 64, AllowedAccesses::ALL)
}

/// Stage 1's leaf followed by stage 2's: the range is the smaller of the two (aligned,
/// so it lies wholly inside both), the permissions what both allow.
fn combine(
    va: u64,
    s1: &Leaf,
    s1_allowed: AllowedAccesses,
    ipa: u64,
    s2: &Translation,
) -> Translation {
    let size_bits = s1.size_bits.min(s2.size_bits());
    Translation::around(
        va,
        s2.output_of(ipa),
        size_bits,
        s1_allowed.intersect(s2.allowed),
    )
}
