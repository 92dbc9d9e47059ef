//! Stage 2 (IPA -> PA): its configuration from the STE, and what a leaf permits.

use super::access::{Access, AllowedAccesses};
use super::caps::Smmuv3Caps;
use super::granule::Granule;
use super::walk::{Leaf, WalkParams};
use super::wire::Ste;

/// Start-level tables that may be concatenated at stage 2.
const MAX_CONCATENATED_BITS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage2Config {
    pub vmid: u16,
    pub walk: WalkParams,
    /// AF=0 does not fault (S2AFFD).
    pub access_flag_faults_disabled: bool,
    /// Stage-2 faults stall (S2S) and are recorded (S2R).
    pub stall: bool,
    pub record: bool,
}

impl Stage2Config {
    /// The stage-2 half of a valid STE, or `None` if it is ILLEGAL (C_BAD_STE).
    pub fn from_ste(ste: &Ste, caps: &Smmuv3Caps) -> Option<Self> {
        if !ste.s2_aa64() || ste.s2_endi() {
            return None;
        }
        let granule = Granule::from_tg0(ste.s2_tg())?;
        if !granule_supported(granule, caps) {
            return None;
        }
        let t0sz = u32::from(ste.s2_t0sz());
        let input_bits = 64u32.checked_sub(t0sz)?;
        if !(16..=39).contains(&t0sz) || input_bits > caps.oas_bits {
            return None;
        }
        let start_level = granule.stage2_start_level(ste.s2_sl0())?;
        let start_bits = input_bits.checked_sub(granule.level_shift(start_level))?;
        if start_bits == 0 || start_bits > granule.stride() + MAX_CONCATENATED_BITS {
            return None;
        }
        let output_bits = caps.effective_output_bits(ste.s2_ps());
        let ttb = ste.s2_ttb();
        if ttb >> output_bits != 0 {
            return None;
        }
        // The start table is aligned to its size; lower TTB bits are treated as zero.
        let table = ttb & !((1u64 << (start_bits + 3).max(6)) - 1);
        Some(Self {
            vmid: ste.s2_vmid(),
            walk: WalkParams {
                granule,
                input_bits,
                start_level,
                table,
                output_bits,
            },
            access_flag_faults_disabled: ste.s2_affd(),
            stall: ste.s2_stall(),
            record: ste.s2_record(),
        })
    }

    /// Whether `ipa` is inside stage 2's input range.
    pub fn covers(&self, ipa: u64) -> bool {
        ipa >> self.walk.input_bits == 0
    }
}

pub fn granule_supported(granule: Granule, caps: &Smmuv3Caps) -> bool {
    match granule {
        Granule::K4 => true,
        Granule::K16 => caps.granule_16k,
        Granule::K64 => caps.granule_64k,
    }
}

/// What a stage-2 leaf permits: S2AP read and write, XN for instruction fetches, the same
/// at every privilege.
pub fn permitted(leaf: &Leaf) -> AllowedAccesses {
    let d = leaf.descriptor;
    AllowedAccesses::from_fn(|a: Access| {
        if a.write {
            d.s2_write()
        } else {
            d.s2_read() && !(a.instruction && d.s2_execute_never())
        }
    })
}
