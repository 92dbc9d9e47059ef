//! What a stream does, from its STE: abort, bypass, or translate through stage 1, stage 2
//! or both.

use super::caps::{Smmuv3Caps, StallModel};
use super::stage2::Stage2Config;
use super::wire::ste::{config, Ste};

/// Where a stream's context descriptors are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage1Stream {
    /// The CD table (or its level-1 table); an IPA when stage 2 translates.
    pub context_table: u64,
    /// log2 of the CDs in a level-2 table; `None`: a linear table.
    pub leaf_bits: Option<u32>,
    /// log2 of the number of CDs; 0: one CD and no substreams.
    pub cd_max_bits: u32,
    /// S1DSS: what transactions without a substream do when there are substreams.
    pub default_substream: u8,
    pub stalls_disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranslateConfig {
    pub stage1: Option<Stage1Stream>,
    pub stage2: Option<Stage2Config>,
    /// Tags the stream's TLB entries (STE.S2VMID, also without stage 2).
    pub vmid: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamConfig {
    /// Transactions are terminated without an event.
    Abort,
    /// Addresses pass through untranslated.
    Bypass,
    Translate(TranslateConfig),
}

impl StreamConfig {
    /// A stream's configuration, or `None` if the STE is invalid or ILLEGAL (C_BAD_STE).
    pub fn from_ste(ste: &Ste, caps: &Smmuv3Caps) -> Option<Self> {
        if !ste.valid() {
            return None;
        }
        let cfg = ste.config();
        // Config 0b0xx: abort, with no event.
        if cfg & 0b100 == 0 {
            return Some(Self::Abort);
        }
        if cfg == config::BYPASS {
            return Some(Self::Bypass);
        }
        let s1 = cfg & 1 != 0;
        let s2 = cfg & 2 != 0;
        if (s1 && !caps.stage1) || (s2 && !caps.stage2) {
            return None;
        }
        // Only non-secure EL1 streams are modelled.
        if ste.strw() != 0 {
            return None;
        }
        let stage2 = if s2 {
            Some(Stage2Config::from_ste(ste, caps)?)
        } else {
            None
        };
        let stage1 = if s1 {
            Some(stage1_stream(ste, caps, s2)?)
        } else {
            None
        };
        Some(Self::Translate(TranslateConfig {
            stage1,
            stage2,
            vmid: if caps.stage2 { ste.s2_vmid() } else { 0 },
        }))
    }
}

fn stage1_stream(ste: &Ste, caps: &Smmuv3Caps, nested: bool) -> Option<Stage1Stream> {
    let cd_max_bits = u32::from(ste.s1_cd_max());
    if cd_max_bits > caps.ssid_bits {
        return None;
    }
    let leaf_bits = match (cd_max_bits, ste.s1_fmt()) {
        (0, _) | (_, 0) => None,
        (_, 1) => Some(6),
        (_, 2) => Some(10),
        _ => return None,
    };
    if ste.s1_stall_disable() && caps.stall_model == StallModel::StallForced {
        return None;
    }
    let context_table = ste.s1_context_ptr();
    // Without stage 2 the pointer is a physical address and must fit the SMMU's; with
    // stage 2, stage 2 judges it.
    if !nested && context_table >> caps.oas_bits != 0 {
        return None;
    }
    Some(Stage1Stream {
        context_table,
        leaf_bits,
        cd_max_bits,
        default_substream: ste.s1_dss(),
        stalls_disabled: ste.s1_stall_disable(),
    })
}
