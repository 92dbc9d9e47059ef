//! The DMA path: endpoints translating through their domain, bypass, faults, and the
//! device's config space.

use vm_memory::{Bytes, GuestAddress, Permissions};

use super::rig::*;
use crate::dma::DmaFault;
use crate::virtio::iommu::config::{IommuConfig, X86_MSI_START};
use crate::virtio::iommu::faults::FaultRateLimit;
use crate::virtio::iommu::protocol::{
    Status, ATTACH_F_BYPASS, CONFIG_BYPASS_OFFSET, FAULT_F_ADDRESS, FAULT_F_READ, FAULT_F_WRITE,
    FAULT_R_DOMAIN, FAULT_R_MAPPING, MAP_F_READ, MAP_F_WRITE,
};
use crate::virtio::iommu::Iommu;
use crate::virtio::{VirtioDevice, WorkerSpec};

const OK: Option<Status> = Some(Status::Ok);
const RW: u32 = MAP_F_READ | MAP_F_WRITE;

#[test]
fn dma_through_a_mapping_reaches_the_mapped_guest_pages() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0x4000_0000, 0x4000_1fff, 0x50_0000, RW), OK);
    let dma = rig.memory(DISK);
    dma.write_obj(0x1234_5678u32, GuestAddress(0x4000_1ffc))
        .unwrap();
    let seen: u32 = rig.mem.read_obj(GuestAddress(0x50_1ffc)).unwrap();
    assert_eq!(seen, 0x1234_5678);
    assert!(
        dma.read_obj::<u64>(GuestAddress(0x4000_1ffc)).is_err(),
        "runs past the end"
    );
}

#[test]
fn translation_crosses_mapping_boundaries_into_discontiguous_pages() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x70_0000, RW), OK);
    assert_eq!(rig.map(1, 0x2000, 0x2fff, 0x30_0000, RW), OK);
    let dma = rig.memory(DISK);
    dma.write_slice(&[0xab; 32], GuestAddress(0x1ff0)).unwrap();
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    rig.mem.read_slice(&mut a, GuestAddress(0x70_0ff0)).unwrap();
    rig.mem.read_slice(&mut b, GuestAddress(0x30_0000)).unwrap();
    assert_eq!((a, b), ([0xab; 16], [0xab; 16]));
}

#[test]
fn permissions_are_enforced_and_faults_name_the_access() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, MAP_F_READ), OK);
    assert_eq!(rig.map(1, 0x2000, 0x2fff, 0x6000, MAP_F_WRITE), OK);
    let t = rig.translator(DISK);
    assert!(t.translate(0x1000, 8, Permissions::Read).is_ok());
    assert_eq!(
        t.translate(0x1000, 8, Permissions::Write),
        Err(DmaFault::Forbidden { iova: 0x1000 })
    );
    assert!(t.translate(0x2000, 8, Permissions::Write).is_ok());
    assert_eq!(
        t.translate(0x2ff8, 16, Permissions::Write),
        Err(DmaFault::Unmapped { iova: 0x3000 })
    );
    let mut faults = rig.state.faults();
    let first = faults.pop().unwrap();
    assert_eq!(first.reason, FAULT_R_MAPPING);
    assert_eq!(first.flags, FAULT_F_WRITE | FAULT_F_ADDRESS);
    assert_eq!((first.endpoint, first.address), (DISK, 0x1000));
    assert_eq!(faults.pop().unwrap().address, 0x3000);
    assert!(faults.pop().is_none());
}

#[test]
fn unattached_endpoint_is_blocked_unless_bypass_is_on() {
    let rig = Rig::new();
    let t = rig.translator(DISK);
    assert_eq!(
        t.translate(0x5000, 8, Permissions::Read),
        Err(DmaFault::Blocked { iova: 0x5000 })
    );
    let fault = rig.state.faults().pop().unwrap();
    assert_eq!(fault.reason, FAULT_R_DOMAIN);
    assert_eq!(fault.flags, FAULT_F_READ | FAULT_F_ADDRESS);
    rig.state.set_bypass(true);
    let pieces = t.translate(0x5000, 8, Permissions::ReadWrite).unwrap();
    assert_eq!(
        (pieces[0].iova, pieces[0].gpa, pieces[0].len),
        (0x5000, 0x5000, 8)
    );
    // Attaching to a translated domain ends the bypass.
    assert_eq!(rig.attach(1, DISK), OK);
    assert!(t.translate(0x5000, 8, Permissions::Read).is_err());
}

#[test]
fn bypass_domain_is_identity_even_with_bypass_off() {
    let rig = Rig::new();
    let reply = rig.send(&attach(3, DISK, ATTACH_F_BYPASS, 0), 4);
    assert_eq!(reply.status(), OK);
    let dma = rig.memory(DISK);
    dma.write_obj(7u64, GuestAddress(0x8000)).unwrap();
    assert_eq!(rig.mem.read_obj::<u64>(GuestAddress(0x8000)).unwrap(), 7);
}

#[test]
fn msi_writes_pass_untranslated_but_reads_do_not() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    let t = rig.translator(DISK);
    let pieces = t.translate(X86_MSI_START, 4, Permissions::Write).unwrap();
    assert_eq!(pieces[0].gpa, X86_MSI_START);
    assert!(t.translate(X86_MSI_START, 4, Permissions::Read).is_err());
}

#[test]
fn translation_near_the_top_of_the_address_space_does_not_wrap() {
    let rig = Rig::new();
    rig.state.set_bypass(true);
    let t = rig.translator(DISK);
    assert_eq!(
        t.translate(u64::MAX, 1, Permissions::Read),
        Err(DmaFault::Unmapped { iova: u64::MAX })
    );
    let pieces = t.translate(u64::MAX - 16, 16, Permissions::Read).unwrap();
    assert_eq!(pieces[0].len, 16);
    assert!(t.translate(0, 0, Permissions::Read).unwrap().is_empty());
    let whole = t.translate(0, u64::MAX, Permissions::Read).unwrap();
    assert_eq!((whole[0].gpa, whole[0].len), (0, u64::MAX));
    let dma = rig.memory(DISK);
    dma.write_obj(5u32, GuestAddress(0)).unwrap();
}

#[test]
fn an_unmap_takes_effect_on_the_very_next_access() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    let dma = rig.memory(DISK);
    dma.read_obj::<u32>(GuestAddress(0x1000)).unwrap();
    assert_eq!(rig.unmap(1, 0x1000, 0x1fff), OK);
    assert!(dma.read_obj::<u32>(GuestAddress(0x1000)).is_err());
}

#[test]
fn endpoints_in_different_domains_are_isolated() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.attach(2, RNG), OK);
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, RW), OK);
    assert!(rig
        .translator(DISK)
        .translate(0x1000, 4, Permissions::Read)
        .is_ok());
    assert!(rig
        .translator(RNG)
        .translate(0x1000, 4, Permissions::Read)
        .is_err());
}

#[test]
fn a_faulting_guest_is_rate_limited() {
    let rate = FaultRateLimit {
        burst: 8,
        per_second: 1,
        max_pending: 100,
    };
    let rig = Rig::with(IommuConfig::default(), rate);
    let t = rig.translator(DISK);
    for i in 0..10_000 {
        assert!(t.translate(i * 8, 8, Permissions::Read).is_err());
    }
    let counters = rig.state.faults().counters();
    assert_eq!(counters.reported, 10_000);
    // The burst, plus at most one token refilled while the loop ran.
    let pending = rig.state.faults().pending() as u64;
    assert!((8..=9).contains(&pending), "{pending}");
    assert_eq!(
        counters.rate_limited + counters.overflowed,
        10_000 - pending
    );
}

// The device as the transport sees it.

fn device(config: IommuConfig) -> Iommu {
    Iommu::new(config, WorkerSpec::unconfined("viommu-test")).unwrap()
}

#[test]
fn config_space_layout() {
    let config = IommuConfig {
        domain_range: (1, 100),
        default_bypass: true,
        ..IommuConfig::default()
    };
    let dev = device(config);
    let mut space = [0u8; 40];
    dev.read_config(0, &mut space);
    let le64 = |at: usize| u64::from_le_bytes(space[at..at + 8].try_into().unwrap());
    let le32 = |at: usize| u32::from_le_bytes(space[at..at + 4].try_into().unwrap());
    assert_eq!(le64(0) & 0xfff, 0);
    assert_eq!(le64(0).trailing_zeros(), 12, "4 KiB granule");
    assert_ne!(le64(0) & (1 << 21), 0, "2 MiB");
    assert_eq!((le64(8), le64(16)), (0, (1 << 48) - 1));
    assert_eq!((le32(24), le32(28)), (1, 100));
    assert_eq!(le32(32), 24);
    assert_eq!(space[36], 1);
    let mut byte = [0u8; 1];
    dev.read_config(36, &mut byte);
    assert_eq!(byte, [1]);
}

#[test]
fn only_the_bypass_byte_is_writable_and_only_with_0_or_1() {
    let mut dev = device(IommuConfig::default());
    let bypass = |dev: &Iommu| {
        let mut b = [0u8];
        dev.read_config(CONFIG_BYPASS_OFFSET as u64, &mut b);
        b[0]
    };
    dev.write_config(CONFIG_BYPASS_OFFSET as u64, &[1]);
    assert_eq!(bypass(&dev), 1);
    dev.write_config(CONFIG_BYPASS_OFFSET as u64, &[2]);
    assert_eq!(bypass(&dev), 1);
    dev.write_config(0, &[0xff; 8]);
    dev.write_config(u64::MAX, &[0]);
    let mut mask = [0u8; 8];
    dev.read_config(0, &mut mask);
    assert_eq!(mask[0], 0, "page_size_mask unchanged");
    dev.write_config(CONFIG_BYPASS_OFFSET as u64, &[0]);
    assert_eq!(bypass(&dev), 0);
}

#[test]
fn device_reset_drops_domains_but_keeps_bypass() {
    let mut dev = device(IommuConfig::default());
    let disk = dev.add_endpoint(DISK);
    dev.state().domains_mut().attach(1, DISK, false).unwrap();
    dev.write_config(CONFIG_BYPASS_OFFSET as u64, &[1]);
    dev.reset();
    assert_eq!(dev.state().domains().domain_count(), 0);
    let ram = vm_memory::GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    assert!(
        vm_memory::GuestMemory::check_range(
            &disk.memory(ram),
            GuestAddress(0x1000),
            4,
            Permissions::Read
        ),
        "bypassed"
    );
}

#[test]
fn offered_features_never_include_legacy_bypass() {
    let dev = device(IommuConfig::default());
    assert_eq!(dev.features() & (1 << 3), 0);
    assert_eq!(dev.features() & 0x77, 0x77);
    assert_eq!(dev.device_type(), 23);
    assert_eq!(dev.queue_max_sizes().len(), 2);
}
