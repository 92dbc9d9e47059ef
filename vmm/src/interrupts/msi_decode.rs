//! What an x86 MSI message means, for reports: the address selects the destination local
//! APIC, the data the vector and how it is delivered (Intel SDM vol. 3, "Message Signalled
//! Interrupts").

use std::fmt;

use devices::interrupt::MsiMessage;

/// Address bits 19:12: the destination APIC ID.
const DESTINATION_SHIFT: u32 = 12;
/// Address bit 2: the destination ID is a logical APIC ID (else physical).
const DESTINATION_LOGICAL: u64 = 1 << 2;
/// Address bit 3: lowest-priority redirection may pick another CPU of the destination.
const REDIRECTION_HINT: u64 = 1 << 3;
/// Data bits 10:8.
const DELIVERY_MODE_SHIFT: u32 = 8;
/// Data bit 15: level-triggered (else edge).
const TRIGGER_LEVEL: u32 = 1 << 15;
/// Data bit 14: for level-triggered messages, assert (else deassert).
const LEVEL_ASSERT: u32 = 1 << 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    ExtInt,
    /// 0b011 and 0b110.
    Reserved(u8),
}

impl DeliveryMode {
    fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            7 => DeliveryMode::ExtInt,
            other => DeliveryMode::Reserved(other),
        }
    }
}

impl fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryMode::Fixed => f.write_str("fixed"),
            DeliveryMode::LowestPriority => f.write_str("lowest"),
            DeliveryMode::Smi => f.write_str("smi"),
            DeliveryMode::Nmi => f.write_str("nmi"),
            DeliveryMode::Init => f.write_str("init"),
            DeliveryMode::ExtInt => f.write_str("extint"),
            DeliveryMode::Reserved(bits) => write!(f, "reserved({bits:#05b})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedMsi {
    pub destination: u8,
    pub logical_destination: bool,
    pub redirection_hint: bool,
    pub vector: u8,
    pub delivery: DeliveryMode,
    pub level_triggered: bool,
    pub asserted: bool,
    /// The address is outside the 0xfeeXXXXX window the local APICs decode: a guest bug,
    /// or a message meant for an interrupt remapping unit nestor does not have.
    pub outside_apic_window: bool,
}

impl DecodedMsi {
    pub fn new(message: MsiMessage) -> Self {
        let address = message.address;
        let data = message.data;
        Self {
            destination: (address >> DESTINATION_SHIFT) as u8,
            logical_destination: address & DESTINATION_LOGICAL != 0,
            redirection_hint: address & REDIRECTION_HINT != 0,
            vector: data as u8,
            delivery: DeliveryMode::from_bits((data >> DELIVERY_MODE_SHIFT) as u8),
            level_triggered: data & TRIGGER_LEVEL != 0,
            asserted: data & LEVEL_ASSERT != 0,
            outside_apic_window: address >> 20 != 0xfee,
        }
    }
}

impl fmt::Display for DecodedMsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.logical_destination {
            "logical"
        } else {
            "physical"
        };
        write!(
            f,
            "dest={:#x} ({mode}) vector={:#x} delivery={} trigger=",
            self.destination, self.vector, self.delivery
        )?;
        if self.level_triggered {
            let level = if self.asserted { "assert" } else { "deassert" };
            write!(f, "level/{level}")?;
        } else {
            f.write_str("edge")?;
        }
        if self.redirection_hint {
            f.write_str(" redirection-hint")?;
        }
        if self.outside_apic_window {
            f.write_str(" (address outside the APIC window)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(address: u64, data: u32) -> DecodedMsi {
        DecodedMsi::new(MsiMessage { address, data })
    }

    #[test]
    fn every_delivery_mode_is_named() {
        let modes: Vec<DeliveryMode> = (0..8)
            .map(|m| decode(0xfee0_0000, m << 8).delivery)
            .collect();
        assert_eq!(
            modes,
            [
                DeliveryMode::Fixed,
                DeliveryMode::LowestPriority,
                DeliveryMode::Smi,
                DeliveryMode::Reserved(3),
                DeliveryMode::Nmi,
                DeliveryMode::Init,
                DeliveryMode::Reserved(6),
                DeliveryMode::ExtInt,
            ]
        );
        let names: Vec<String> = modes.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "fixed",
                "lowest",
                "smi",
                "reserved(0b011)",
                "nmi",
                "init",
                "reserved(0b110)",
                "extint"
            ]
        );
    }

    #[test]
    fn a_linux_style_fixed_edge_message() {
        let msi = decode(0xfee0_3000, 0x0000_4025);
        assert_eq!(msi.destination, 3);
        assert!(!msi.logical_destination && !msi.redirection_hint);
        assert_eq!(msi.vector, 0x25);
        assert_eq!(msi.delivery, DeliveryMode::Fixed);
        assert!(!msi.level_triggered);
        assert!(!msi.outside_apic_window);
        assert_eq!(
            msi.to_string(),
            "dest=0x3 (physical) vector=0x25 delivery=fixed trigger=edge"
        );
    }

    #[test]
    fn logical_lowest_priority_level_message() {
        let msi = decode(0xfeef_f00c, 0x0000_c1ef);
        assert_eq!(msi.destination, 0xff);
        assert!(msi.logical_destination && msi.redirection_hint);
        assert_eq!(msi.vector, 0xef);
        assert_eq!(msi.delivery, DeliveryMode::LowestPriority);
        assert!(msi.level_triggered && msi.asserted);
        assert_eq!(
            msi.to_string(),
            "dest=0xff (logical) vector=0xef delivery=lowest trigger=level/assert redirection-hint"
        );
    }

    #[test]
    fn an_unprogrammed_entry_is_flagged() {
        let msi = decode(0, 0);
        assert!(msi.outside_apic_window);
        assert!(msi
            .to_string()
            .ends_with("(address outside the APIC window)"));
    }
}
