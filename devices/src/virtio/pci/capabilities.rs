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

/// struct virtio_pci_cfg_cap: a window through configuration space onto the BAR.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VirtioPciCfgCap {
    pub cap: VirtioPciCap,
    pub pci_cfg_data: [u8; 4],
}

const _: () = assert!(std::mem::size_of::<VirtioPciCap>() == 16);
const _: () = assert!(std::mem::size_of::<VirtioPciNotifyCap>() == 20);
const _: () = assert!(std::mem::size_of::<VirtioPciCfgCap>() == 20);

pub const PCI_CAP_ID_VENDOR: u8 = 0x09;

pub const CFG_TYPE_COMMON: u8 = 1;
pub const CFG_TYPE_NOTIFY: u8 = 2;
pub const CFG_TYPE_ISR: u8 = 3;
pub const CFG_TYPE_DEVICE: u8 = 4;
pub const CFG_TYPE_PCI: u8 = 5;

/// Byte offsets inside struct virtio_pci_cfg_cap of the fields the driver writes.
pub const PCI_CFG_BAR: usize = 4;
pub const PCI_CFG_OFFSET: usize = 8;
pub const PCI_CFG_LENGTH: usize = 12;
pub const PCI_CFG_DATA: usize = 16;

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

impl VirtioPciCfgCap {
    /// The window starts closed: length 0 selects nothing.
    pub fn new() -> Self {
        let mut cap = VirtioPciCap::new(CFG_TYPE_PCI, 0, 0);
        cap.cap_len = std::mem::size_of::<Self>() as u8;
        Self {
            cap,
            pci_cfg_data: [0; 4],
        }
    }

    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = self.cap.to_bytes();
        b.extend_from_slice(&self.pci_cfg_data);
        b
    }

    /// What the guest may write: bar, offset, length and pci_cfg_data; the rest is fixed.
    pub fn writable_mask() -> Vec<u8> {
        let mut mask = vec![0u8; std::mem::size_of::<Self>()];
        mask[PCI_CFG_BAR] = 0xff;
        mask[PCI_CFG_OFFSET..PCI_CFG_DATA + 4].fill(0xff);
        mask
    }
}

/// The BAR access a pci_cfg_data access stands for: `(offset, length)` in the virtio BAR.
/// None when the driver programmed what the spec forbids: another BAR, a length other than
/// 1, 2 or 4, an offset not aligned to the length, or a range past the end of the BAR.
pub fn pci_cfg_target(bar: u8, offset: u32, length: u32) -> Option<(u64, usize)> {
    if bar != VIRTIO_BAR || !matches!(length, 1 | 2 | 4) || !offset.is_multiple_of(length) {
        return None;
    }
    let (offset, length) = (u64::from(offset), u64::from(length));
    (offset + length <= BAR_SIZE).then_some((offset, length as usize))
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
        let cfg = VirtioPciCfgCap::new().to_bytes();
        assert_eq!(cfg.len(), 20);
        assert_eq!(&cfg[..5], &[0x09, 0, 20, 5, 0]);
        assert_eq!(&cfg[8..], &[0; 12]);
        let mask = VirtioPciCfgCap::writable_mask();
        assert_eq!(mask.len(), 20);
        assert_eq!(&mask[..8], &[0, 0, 0, 0, 0xff, 0, 0, 0]);
        assert!(mask[8..].iter().all(|&m| m == 0xff));
        const { assert!(MSIX_TABLE_LEN / 16 > MAX_QUEUES as u64) };
        const { assert!(NOTIFY_LEN / NOTIFY_MULTIPLIER as u64 >= MAX_QUEUES as u64) };
        const { assert!(MSIX_PBA_OFFSET + MSIX_PBA_LEN <= BAR_SIZE) };
    }

    #[test]
    fn pci_cfg_target_accepts_only_what_the_spec_allows() {
        assert_eq!(pci_cfg_target(0, 0x14, 1), Some((0x14, 1)));
        assert_eq!(pci_cfg_target(0, 0x16, 2), Some((0x16, 2)));
        assert_eq!(pci_cfg_target(0, 0x7ffc, 4), Some((0x7ffc, 4)));
        assert_eq!(pci_cfg_target(1, 0x14, 1), None);
        assert_eq!(pci_cfg_target(0xff, 0, 4), None);
        for length in [0, 3, 5, 8, u32::MAX] {
            assert_eq!(pci_cfg_target(0, 0, length), None);
        }
        assert_eq!(pci_cfg_target(0, 0x15, 2), None);
        assert_eq!(pci_cfg_target(0, 0x16, 4), None);
        assert_eq!(pci_cfg_target(0, 0x8000, 1), None);
        assert_eq!(pci_cfg_target(0, 0x7ffe, 4), None);
        assert_eq!(pci_cfg_target(0, u32::MAX, 1), None);
        assert_eq!(pci_cfg_target(0, u32::MAX - 3, 4), None);
    }
}
