//! Register offsets of struct virtio_pci_common_cfg (virtio 1.x, 4.1.4.3), all
//! little-endian. Only the virtio 1.0 part (0x38 bytes) is implemented.

pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
pub const DEVICE_FEATURE: u64 = 0x04;
pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
pub const DRIVER_FEATURE: u64 = 0x0c;
pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
pub const NUM_QUEUES: u64 = 0x12;
pub const DEVICE_STATUS: u64 = 0x14;
pub const CONFIG_GENERATION: u64 = 0x15;
pub const QUEUE_SELECT: u64 = 0x16;
pub const QUEUE_SIZE: u64 = 0x18;
pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
pub const QUEUE_ENABLE: u64 = 0x1c;
pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
pub const QUEUE_DESC_LO: u64 = 0x20;
pub const QUEUE_DESC_HI: u64 = 0x24;
pub const QUEUE_DRIVER_LO: u64 = 0x28;
pub const QUEUE_DRIVER_HI: u64 = 0x2c;
pub const QUEUE_DEVICE_LO: u64 = 0x30;
pub const QUEUE_DEVICE_HI: u64 = 0x34;
pub const END: u64 = 0x38;

/// The width of the register at `offset`, or None inside a register or past the end.
pub fn register_width(offset: u64) -> Option<usize> {
    match offset {
        DEVICE_FEATURE_SELECT | DEVICE_FEATURE | DRIVER_FEATURE_SELECT | DRIVER_FEATURE => Some(4),
        QUEUE_DESC_LO | QUEUE_DESC_HI | QUEUE_DRIVER_LO | QUEUE_DRIVER_HI | QUEUE_DEVICE_LO
        | QUEUE_DEVICE_HI => Some(4),
        CONFIG_MSIX_VECTOR | NUM_QUEUES | QUEUE_SELECT | QUEUE_SIZE | QUEUE_MSIX_VECTOR
        | QUEUE_ENABLE | QUEUE_NOTIFY_OFF => Some(2),
        DEVICE_STATUS | CONFIG_GENERATION => Some(1),
        _ => None,
    }
}

/// "No vector" for config_msix_vector and queue_msix_vector.
pub const NO_VECTOR: u16 = 0xffff;

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_tile_the_structure() {
        let mut offset = 0;
        while offset < END {
            offset += register_width(offset).unwrap() as u64;
        }
        assert_eq!(offset, END);
        assert_eq!(register_width(0x13), None);
        assert_eq!(register_width(END), None);
    }
}
