//! Just enough AML reading to find the Generic Event Device's event register: the guest
//! takes the address from the DSDT, as an ACPI interpreter would, not from a constant.

/// `_HID "ACPI0013"` as the AML string the DSDT names the device with.
const GED_HID: &[u8] = b"\x0dACPI0013\x00";
const EXT_OP_PREFIX: u8 = 0x5b;
const OP_REGION_OP: u8 = 0x80;
const SYSTEM_MEMORY: u8 = 0x00;

/// An integer term at `at`: its value and length, for the constant encodings.
fn integer(aml: &[u8], at: usize) -> Option<(u64, usize)> {
    let bytes = |n: usize| -> Option<u64> {
        let field = aml.get(at + 1..at + 1 + n)?;
        Some(field.iter().rev().fold(0u64, |v, b| v << 8 | u64::from(*b)))
    };
    match *aml.get(at)? {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0x0a => Some((bytes(1)?, 2)),
        0x0b => Some((bytes(2)?, 3)),
        0x0c => Some((bytes(4)?, 5)),
        0x0e => Some((bytes(8)?, 9)),
        _ => None,
    }
}

/// The length of the NameString at `at`.
fn name_string(aml: &[u8], at: usize) -> Option<usize> {
    let mut prefix = 0;
    while matches!(aml.get(at + prefix)?, b'\\' | b'^') {
        prefix += 1;
    }
    let segments = match *aml.get(at + prefix)? {
        0x00 => return Some(prefix + 1),
        0x2e => return Some(prefix + 1 + 8),
        0x2f => return Some(prefix + 2 + 4 * usize::from(*aml.get(at + prefix + 1)?)),
        _ => 4,
    };
    Some(prefix + segments)
}

/// The address of the first SystemMemory OperationRegion declared after the GED's `_HID`,
/// and its length, in the AML body of a DSDT.
pub fn ged_event_register(aml: &[u8]) -> Option<(u64, u64)> {
    let hid = aml.windows(GED_HID.len()).position(|w| w == GED_HID)?;
    let mut at = hid + GED_HID.len();
    while at + 2 <= aml.len() {
        if aml[at] == EXT_OP_PREFIX && aml[at + 1] == OP_REGION_OP {
            let space = at + 2 + name_string(aml, at + 2)?;
            if *aml.get(space)? == SYSTEM_MEMORY {
                let (address, used) = integer(aml, space + 1)?;
                let (length, _) = integer(aml, space + 1 + used)?;
                return Some((address, length));
            }
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(region: &[u8]) -> Vec<u8> {
        let mut aml = b"\x5b\x82\x20GED_\x08_HID\x0dACPI0013\x00".to_vec();
        // A SystemIO region first, which is not the register.
        aml.extend_from_slice(b"\x5b\x80IOPT\x01\x0b\xc0\x03\x0a\x05");
        aml.extend_from_slice(region);
        aml
    }

    #[test]
    fn finds_the_register_in_each_integer_encoding() {
        let dword = device(b"\x5b\x80GDST\x00\x0c\x00\x00\xf0\xfe\x0a\x04");
        assert_eq!(ged_event_register(&dword), Some((0xfef0_0000, 4)));
        let qword = device(b"\x5b\x80\\GDST\x00\x0e\x00\x10\x00\x00\x01\x00\x00\x00\x0a\x08");
        assert_eq!(ged_event_register(&qword), Some((0x1_0000_1000, 8)));
        let dual = device(b"\x5b\x80\x2eGED_GDST\x00\x0b\x00\x20\x01");
        assert_eq!(ged_event_register(&dual), Some((0x2000, 1)));
    }

    #[test]
    fn no_device_or_a_cut_short_region_is_none() {
        let region = b"\x5b\x80GDST\x00\x0c\x00\x00\xf0\xfe\x0a\x04";
        assert_eq!(ged_event_register(region), None, "no GED before it");
        let full = device(region);
        for end in 0..full.len() {
            assert_eq!(ged_event_register(&full[..end]), None, "{end}");
        }
    }
}
