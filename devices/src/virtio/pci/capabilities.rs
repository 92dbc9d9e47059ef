//! The virtio-pci vendor capabilities (virtio 1.x, 4.1.4) and where each structure sits in
//! the transport's single BAR.

/// struct virtio_pci_cap.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VirtioPciCap {
    pub cap_vndr: u8,
    pub cap_next: u8,
    pub cap_len: u8,
    pub cfg_type: u8,
    pub bar: u8,
    pub id: u8,
    pub padding: [u8; 2],
    pub offset: u32,
    pub length: u32,
}

/// struct virtio_pci_notify_cap.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VirtioPciNotifyCap {
    pub cap: VirtioPciCap,
    pub notify_off_multiplier: u32,
}

const _: () = assert!(std::mem::size_of::<VirtioPciCap>() == 16);
const _: () = assert!(std::mem::size_of::<VirtioPciNotifyCap>() == 20);

pub const PCI_CAP_ID_VENDOR: u8 = 0x09;

pub const CFG_TYPE_COMMON: u8 = 1;
pub const CFG_TYPE_NOTIFY: u8 = 2;
pub const CFG_TYPE_ISR: u8 = 3;
pub const CFG_TYPE_DEVICE: u8 = 4;

/// The BAR that holds every virtio structure and the MSI-X table (64-bit: BARs 0 and 1).
pub const VIRTIO_BAR: u8 = 0;
pub const COMMON_OFFSET: u64 = 0x0000;
pub const COMMON_LEN: u64 = 0x38;
pub const ISR_OFFSET: u64 = 0x1000;
pub const ISR_LEN: u64 = 1;
pub const DEVICE_OFFSET: u64 = 0x2000;
pub const DEVICE_LEN: u64 = 0x1000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Each queue notifies at its own dword: NOTIFY_OFFSET + 4 * queue index.
pub const NOTIFY_MULTIPLIER: u32 = 4;
pub const NOTIFY_LEN: u64 = 0x1000;
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
pub const MSIX_TABLE_LEN: u64 = 0x2000;
pub const MSIX_PBA_OFFSET: u64 = 0x6000;
pub const MSIX_PBA_LEN: u64 = 0x1000;
pub const BAR_SIZE: u64 = 0x8000;

/// Queues a device may have; the notify area and the MSI-X table (one vector per queue and
/// one for configuration changes) have room for more.
pub const MAX_QUEUES: usize = 64;

impl VirtioPciCap {
    pub fn new(cfg_type: u8, offset: u64, length: u64) -> Self {
        Self {
            cap_vndr: PCI_CAP_ID_VENDOR,
            cap_len: std::mem::size_of::<Self>() as u8,
            cfg_type,
            bar: VIRTIO_BAR,
            offset: offset as u32,
            length: length as u32,
            ..Default::default()
        }
    }

    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = vec![
            self.cap_vndr,
            self.cap_next,
            self.cap_len,
            self.cfg_type,
            self.bar,
            self.id,
        ];
        b.extend_from_slice(&self.padding);
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.length.to_le_bytes());
        b
    }
}

impl VirtioPciNotifyCap {
    pub fn new(queues: usize) -> Self {
        let mut cap = VirtioPciCap::new(
            CFG_TYPE_NOTIFY,
            NOTIFY_OFFSET,
            (queues.max(1) as u64) * u64::from(NOTIFY_MULTIPLIER),
        );
        cap.cap_len = std::mem::size_of::<Self>() as u8;
        Self {
            cap,
            notify_off_multiplier: NOTIFY_MULTIPLIER,
        }
    }

    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = self.cap.to_bytes();
        b.extend_from_slice(&self.notify_off_multiplier.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bytes_match_the_spec_layout() {
        let cap = VirtioPciCap::new(CFG_TYPE_DEVICE, DEVICE_OFFSET, DEVICE_LEN).to_bytes();
        assert_eq!(cap.len(), 16);
        assert_eq!(&cap[..6], &[0x09, 0, 16, 4, 0, 0]);
        assert_eq!(&cap[8..12], &0x2000u32.to_le_bytes());
        assert_eq!(&cap[12..16], &0x1000u32.to_le_bytes());
        let notify = VirtioPciNotifyCap::new(2).to_bytes();
        assert_eq!(notify.len(), 20);
        assert_eq!(notify[2], 20);
        assert_eq!(&notify[12..16], &8u32.to_le_bytes());
        assert_eq!(&notify[16..20], &4u32.to_le_bytes());
        const { assert!(MSIX_TABLE_LEN / 16 > MAX_QUEUES as u64) };
        const { assert!(NOTIFY_LEN / NOTIFY_MULTIPLIER as u64 >= MAX_QUEUES as u64) };
        const { assert!(MSIX_PBA_OFFSET + MSIX_PBA_LEN <= BAR_SIZE) };
    }
}
