//! What this SMMU implements: the facts its ID registers would show a driver.

/// How the SMMU may treat a faulting transaction (SMMU_IDR0.STALL_MODEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallModel {
    /// Stall and terminate are both supported; a CD chooses.
    StallOrTerminate = 0,
    /// Only terminate: CD.S=1 is illegal.
    TerminateOnly = 1,
    /// Faults always stall: STE.S1STALLD=1 is illegal.
    StallForced = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smmuv3Caps {
    pub stage1: bool,
    pub stage2: bool,
    /// Output address size in bits (32, 36, 40, 42, 44 or 48).
    pub oas_bits: u32,
    /// StreamID bits (SIDSIZE).
    pub sid_bits: u32,
    /// SubstreamID bits (SSIDSIZE); 0: no substreams.
    pub ssid_bits: u32,
    pub stall_model: StallModel,
    pub granule_16k: bool,
    pub granule_64k: bool,
    /// Event queue entries before overflow.
    pub event_queue_depth: usize,
    /// PRI queue entries before overflow.
    pub pri_queue_depth: usize,
    /// Transactions that may be stalled at once (SMMU_IDR5.STALL_MAX).
    pub max_stalls: usize,
    /// Translations the TLB holds before it starts over.
    pub tlb_entries: usize,
}

impl Default for Smmuv3Caps {
    fn default() -> Self {
        Self {
            stage1: true,
            stage2: true,
            oas_bits: 48,
            sid_bits: 16,
            ssid_bits: 20,
            stall_model: StallModel::StallOrTerminate,
            granule_16k: true,
            granule_64k: true,
            event_queue_depth: 512,
            pri_queue_depth: 512,
            max_stalls: 64,
            tlb_entries: 8192,
        }
    }
}

/// The IPS/PS/OAS encoding's address size in bits; 52-bit addressing is not modelled.
pub fn address_size_bits(encoding: u8) -> Option<u32> {
    match encoding {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        _ => None,
    }
}

fn address_size_encoding(bits: u32) -> u32 {
    (0..=5u8)
        .rev()
        .find(|&e| address_size_bits(e).is_some_and(|b| b <= bits))
        .unwrap_or(0)
        .into()
}

impl Smmuv3Caps {
    /// SMMU_IDR0..IDR5 as a driver (or iommufd's GET_HW_INFO) would read them. Only the
    /// fields the model honours are set: no ATS, PRI queue, MSI, HTTU, BTM or hypervisor
    /// stage.
    pub fn idr(&self) -> [u32; 6] {
        let idr0 = u32::from(self.stage2)
            | u32::from(self.stage1) << 1
            | 2 << 2 // TTF: AArch64 tables
            | 1 << 4 // COHACC
            | 1 << 12 // ASID16
            | 1 << 18 // VMID16
            | 1 << 19 // CD2L
            | 2 << 21 // TTENDIAN: little-endian
            | (self.stall_model as u32) << 24
            | 1 << 27; // ST_LEVEL: two-level stream tables
        let log2 = |n: usize| n.max(1).next_power_of_two().trailing_zeros().min(19);
        let idr1 = self.sid_bits
            | self.ssid_bits << 6
            | log2(self.pri_queue_depth) << 11
            | log2(self.event_queue_depth) << 16
            | 19 << 21;
        let idr5 = address_size_encoding(self.oas_bits)
            | 1 << 4
            | u32::from(self.granule_16k) << 5
            | u32::from(self.granule_64k) << 6
            | (self.max_stalls.min(0xffff) as u32) << 16;
        [idr0, idr1, 0, 0, 0, idr5]
    }

    /// The output size a stage may use: its own IPS/PS, capped at the SMMU's.
    pub fn effective_output_bits(&self, encoding: u8) -> u32 {
        address_size_bits(encoding)
            .unwrap_or(self.oas_bits)
            .min(self.oas_bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_registers_describe_the_defaults() {
        let [idr0, idr1, _, _, _, idr5] = Smmuv3Caps::default().idr();
        assert_eq!(idr0 & 3, 3, "both stages");
        assert_eq!(idr0 >> 27 & 3, 1, "two-level stream table");
        assert_eq!(idr1 & 0x3f, 16);
        assert_eq!(idr1 >> 6 & 0x1f, 20);
        assert_eq!(idr1 >> 16 & 0x1f, 9, "512 events");
        assert_eq!(idr5 & 7, 5, "48-bit OAS");
        assert_eq!(idr5 >> 4 & 7, 7, "4, 16 and 64 KiB granules");
        assert_eq!(idr5 >> 16, 64);
    }

    #[test]
    fn output_sizes_are_capped_by_the_smmu() {
        let caps = Smmuv3Caps {
            oas_bits: 40,
            ..Smmuv3Caps::default()
        };
        assert_eq!(caps.effective_output_bits(5), 40);
        assert_eq!(caps.effective_output_bits(1), 36);
        assert_eq!(
            caps.effective_output_bits(6),
            40,
            "52 bits is beyond the model"
        );
        assert_eq!(address_size_encoding(40), 2);
    }
}
