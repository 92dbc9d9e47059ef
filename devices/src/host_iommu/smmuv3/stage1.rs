//! Stage 1 (VA -> IPA): its configuration from the CD, the choice between the TTB0 and
//! TTB1 halves of the address space, and what a leaf permits.

use super::access::{Access, AllowedAccesses};
use super::caps::{Smmuv3Caps, StallModel};
use super::granule::Granule;
use super::stage2::granule_supported;
use super::walk::{Leaf, WalkParams};
use super::wire::Cd;

/// One half of the stage-1 address space (TTB0 or TTB1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage1Region {
    pub walk: WalkParams,
    /// Hierarchical attributes (APTable, XNTable, PXNTable) disabled.
    pub hierarchical_disabled: bool,
    /// Top byte ignored.
    pub top_byte_ignored: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextConfig {
    pub asid: u16,
    pub ttb0: Option<Stage1Region>,
    pub ttb1: Option<Stage1Region>,
    pub access_flag_faults_disabled: bool,
    /// Writable implies execute-never.
    pub wxn: bool,
    pub stall: bool,
    pub record: bool,
    /// Terminated transactions abort; otherwise reads give zero and writes are ignored.
    pub abort: bool,
}

impl ContextConfig {
    /// The configuration of a CD, or `None` if it is ILLEGAL (C_BAD_CD).
    /// `stalls_disabled` is the STE's S1STALLD.
    pub fn from_cd(cd: &Cd, caps: &Smmuv3Caps, stalls_disabled: bool) -> Option<Self> {
        if !cd.valid() || !cd.aa64() || cd.endi() {
            return None;
        }
        // IPS 6 (52 bits) is legal and capped to the SMMU's output size; 7 is reserved.
        if cd.ips() > 6 {
            return None;
        }
        let output_bits = caps.effective_output_bits(cd.ips());
        let tbi = cd.tbi();
        let ttb0 = if cd.epd0() {
            None
        } else {
            let granule = Granule::from_tg0(cd.tg0())?;
            Some(region(
                granule,
                cd.t0sz(),
                cd.ttb0(),
                output_bits,
                caps,
                cd.had0(),
                tbi & 1 != 0,
            )?)
        };
        let ttb1 = if cd.epd1() {
            None
        } else {
            let granule = Granule::from_tg1(cd.tg1())?;
            Some(region(
                granule,
                cd.t1sz(),
                cd.ttb1(),
                output_bits,
                caps,
                cd.had1(),
                tbi & 2 != 0,
            )?)
        };
        if cd.stall() && (caps.stall_model == StallModel::TerminateOnly || stalls_disabled) {
            return None;
        }
        Some(Self {
            asid: cd.asid(),
            ttb0,
            ttb1,
            access_flag_faults_disabled: cd.affd(),
            wxn: cd.wxn(),
            stall: cd.stall() || caps.stall_model == StallModel::StallForced,
            record: cd.record(),
            abort: cd.abort(),
        })
    }

    /// The half of the address space `va` falls in (bit 55 chooses; every bit above the
    /// region's size, up to bit 63 or, with top-byte-ignore, 55, must equal it), and the
    /// input address within it. `None`: a translation fault.
    pub fn region(&self, va: u64) -> Option<(&Stage1Region, u64)> {
        let upper = va >> 55 & 1 == 1;
        let region = if upper {
            self.ttb1.as_ref()?
        } else {
            self.ttb0.as_ref()?
        };
        let top = if region.top_byte_ignored { 55 } else { 63 };
        let bits = region.walk.input_bits;
        let above = (va << (63 - top)) >> (63 - top + bits);
        let expected = if upper {
            u64::MAX >> (63 - top + bits)
        } else {
            0
        };
        if above != expected {
            return None;
        }
        Some((region, va & ((1u64 << bits) - 1)))
    }
}

fn region(
    granule: Granule,
    tsz: u8,
    ttb: u64,
    output_bits: u32,
    caps: &Smmuv3Caps,
    hierarchical_disabled: bool,
    top_byte_ignored: bool,
) -> Option<Stage1Region> {
    if !granule_supported(granule, caps) || !(16..=39).contains(&tsz) {
        return None;
    }
    if ttb >> output_bits != 0 {
        return None;
    }
    let input_bits = 64 - u32::from(tsz);
    let start_level = granule.stage1_start_level(input_bits);
    let start_bits = input_bits - granule.level_shift(start_level);
    // The start table is aligned to its size; lower TTB bits are treated as zero.
    let table = ttb & !((1u64 << (start_bits + 3).max(6)) - 1);
    Some(Stage1Region {
        walk: WalkParams {
            granule,
            input_bits,
            start_level,
            table,
            output_bits,
        },
        hierarchical_disabled,
        top_byte_ignored,
    })
}

/// What a stage-1 leaf permits: AP\[2\] makes it read-only, AP\[1\] opens it to unprivileged
/// accesses, UXN/PXN forbid instruction fetches, and the tables above can only take away
/// (unless hierarchical attributes are disabled). WXN makes writable memory execute-never.
pub fn permitted(leaf: &Leaf, region: &Stage1Region, wxn: bool) -> AllowedAccesses {
    let d = leaf.descriptor;
    let hier = !region.hierarchical_disabled;
    let read_only = d.ap_read_only() || (hier && leaf.table_read_only());
    let writable = !read_only;
    let unprivileged = d.ap_unprivileged() && !(hier && leaf.table_no_unprivileged());
    AllowedAccesses::from_fn(|a: Access| {
        if !a.privileged && !unprivileged {
            return false;
        }
        if a.write {
            return writable;
        }
        if a.instruction {
            let xn = if a.privileged {
                d.pxn() || (hier && leaf.table_pxn())
            } else {
                d.uxn() || (hier && leaf.table_xn())
            };
            // WXN: writable memory is never executable.
            return !(xn || (wxn && writable));
        }
        true
    })
}
