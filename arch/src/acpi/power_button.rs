//! The power button of a hardware-reduced platform: a Generic Event Device (ACPI0013) whose
//! interrupt runs `_EVT`, which reads the event register and notifies the power-button
//! device (PNP0C0C) with 0x80, "button pressed".

use acpi_tables::aml::{
    self, And, Device, EISAName, Equal, Field, FieldAccessType, FieldEntry, FieldLockRule,
    FieldUpdateRule, If, Interrupt, Local, Method, Name, Notify, OpRegion, OpRegionSpace, Path,
    ResourceTemplate, Store,
};

use super::{to_bytes, GedDescription};

/// The event register's power-button bit; kept equal to devices::legacy::ged.
const POWER_BUTTON_EVENT: u32 = 1;
/// The register's width in bytes.
const REGISTER_BYTES: u32 = 4;
/// Notify value for a pressed button (ACPI 6.5, 4.8.3.1.1).
const BUTTON_PRESSED: u8 = 0x80;

fn power_button_device() -> Vec<u8> {
    to_bytes(&Device::new(
        "_SB_.PWRB".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C0C")),
            &Name::new("_UID".into(), &aml::ZERO),
        ],
    ))
}

fn event_device(ged: &GedDescription) -> Vec<u8> {
    // Edge-triggered, active high: an irqfd write is one edge.
    let interrupt = Interrupt::new(true, true, false, false, ged.gsi);
    let crs = ResourceTemplate::new(vec![&interrupt]);
    let region = OpRegion::new(
        "GDST".into(),
        OpRegionSpace::SystemMemory,
        &ged.register,
        &REGISTER_BYTES,
    );
    let field = Field::new(
        "GDST".into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        vec![FieldEntry::Named(*b"GDAT", 32)],
    );
    // Reading GDAT takes the pending events from the device.
    let register = Path::new("GDAT");
    let read_events = Store::new(&Local(0), &register);
    let power_button_bit = And::new(&Local(1), &Local(0), &POWER_BUTTON_EVENT);
    let pressed = Path::new("\\_SB_.PWRB");
    let notify = Notify::new(&pressed, &BUTTON_PRESSED);
    let is_pressed = Equal::new(&Local(1), &POWER_BUTTON_EVENT);
    let if_pressed = If::new(&is_pressed, vec![&notify]);
    let evt = Method::new(
        "_EVT".into(),
        1,
        true,
        vec![&read_events, &power_button_bit, &if_pressed],
    );
    to_bytes(&Device::new(
        "_SB_.GED_".into(),
        vec![
            &Name::new("_HID".into(), &"ACPI0013"),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &crs),
            &region,
            &field,
            &evt,
        ],
    ))
}

/// The power-button device and the event device that presses it.
pub(super) fn build(ged: &GedDescription) -> Vec<u8> {
    let mut aml = power_button_device();
    aml.extend(event_device(ged));
    aml
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_event_device_describes_its_register_and_interrupt() {
        let aml = build(&GedDescription {
            register: 0xfef0_0000,
            gsi: 16,
        });
        // OperationRegion (GDST, SystemMemory, DWordConst 0xfef00000, 4)
        let mut region = vec![0x5b, 0x80];
        region.extend_from_slice(b"GDST");
        region.extend_from_slice(&[0x00, 0x0c, 0x00, 0x00, 0xf0, 0xfe, 0x0a, 0x04]);
        assert!(contains(&aml, &region));
        // Extended interrupt descriptor: consumer, edge, active high, one interrupt, GSI 16.
        assert!(contains(
            &aml,
            &[0x89, 0x06, 0x00, 0x03, 0x01, 0x10, 0x00, 0x00, 0x00]
        ));
        assert!(contains(&aml, b"\x0dACPI0013\x00"));
        // PNP0C0C, compressed.
        assert!(contains(&aml, &[0x41, 0xd0, 0x0c, 0x0c]));
        // Notify (\_SB_.PWRB, 0x80)
        assert!(contains(&aml, b"\x86\\\x2e_SB_PWRB\x0a\x80"));
    }
}
