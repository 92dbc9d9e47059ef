use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

use super::*;

/// Maps IOVA 0x10000..0x12000 to GPA 0x4000, read-only past 0x11000.
#[derive(Debug)]
struct TwoPages;

impl DmaAddressSpace for TwoPages {
    fn fill(
        &self,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        _: Permissions,
    ) -> Result<(), DmaFault> {
        if iova < 0x10000 || iova + len > 0x12000 {
            return Err(DmaFault::Unmapped { iova });
        }
        tlb.insert(0x10000, 0x10fff, 0x4000, Permissions::ReadWrite);
        tlb.insert(0x11000, 0x11fff, 0x5000, Permissions::Read);
        Ok(())
    }
}

fn ram() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
}

fn two_pages() -> DeviceDma {
    DeviceDma::translated(DeviceTlb::new(), Arc::new(TwoPages))
}

#[test]
fn untranslated_memory_is_guest_physical() {
    let dma = DeviceDma::untranslated();
    assert!(!dma.is_translated());
    let mem = dma.memory(ram());
    mem.write_obj(0xabcdu32, GuestAddress(0x4000)).unwrap();
    assert_eq!(mem.read_obj::<u32>(GuestAddress(0x4000)).unwrap(), 0xabcd);
    assert!(mem.read_obj::<u32>(GuestAddress(0x10000)).is_err());
    assert!(mem.read_obj::<u8>(GuestAddress(u64::MAX)).is_err());
}

#[test]
fn translated_access_spans_mappings_and_respects_permissions() {
    let ram = ram();
    let mem = two_pages().memory(ram.clone());
    mem.write_obj(0x1122_3344u32, GuestAddress(0x10ffe))
        .unwrap_err(); // crosses into read-only
    mem.write_obj(0x1122u16, GuestAddress(0x10ff0)).unwrap();
    assert_eq!(ram.read_obj::<u16>(GuestAddress(0x4ff0)).unwrap(), 0x1122);
    ram.write_obj(0x55u8, GuestAddress(0x5000)).unwrap();
    let mut buf = [0u8; 0x20];
    mem.read_slice(&mut buf, GuestAddress(0x10ff0)).unwrap();
    assert_eq!(buf[0x10], 0x55);
    assert!(mem.read_obj::<u8>(GuestAddress(0x12000)).is_err());
    assert!(mem.read_obj::<u8>(GuestAddress(0x4000)).is_err());
}

/// Runs `op` on another thread; the receiver hears when it has finished.
fn on_thread(op: impl FnOnce() + Send + 'static) -> mpsc::Receiver<()> {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        op();
        let _ = done.send(());
    });
    finished
}

#[test]
fn invalidation_waits_for_an_access_in_flight() {
    let dma = two_pages();
    let mem = dma.memory(ram());
    // A translated slice held across the invalidation: the copy is still in flight.
    let mut slices = mem
        .get_slices(GuestAddress(0x10000), 0x800, Permissions::Write)
        .unwrap();
    let slice = slices.next().unwrap().unwrap();
    let tlb = dma.tlb().clone();
    let finished = on_thread(move || tlb.invalidate_range(0x10000, 0x10fff));
    assert!(finished.recv_timeout(Duration::from_millis(200)).is_err());
    slice.write_obj(7u8, 0).unwrap();
    drop(slices);
    finished.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn revocation_waits_for_the_copy_then_fails_every_later_access() {
    let dma = two_pages();
    let mem = dma.memory(ram());
    let slices = mem
        .get_slices(GuestAddress(0x10000), 0x10, Permissions::Read)
        .unwrap();
    let tlb = dma.tlb().clone();
    let finished = on_thread(move || tlb.revoke());
    assert!(finished.recv_timeout(Duration::from_millis(200)).is_err());
    drop(slices);
    finished.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(mem.read_obj::<u8>(GuestAddress(0x10000)).is_err());
    assert!(mem.is_revoked());
    assert_eq!(mem.while_live(|| 1), None);
    // The next activation works again.
    let next = dma.memory(ram());
    next.read_obj::<u8>(GuestAddress(0x10000)).unwrap();
}

#[test]
fn a_paused_device_waits_until_resumed_or_revoked() {
    for end_pause_by_revoking in [false, true] {
        let dma = two_pages();
        let mem = dma.memory(ram());
        dma.tlb().pause();
        let accessed = Arc::new(AtomicBool::new(false));
        let seen = accessed.clone();
        let finished = on_thread(move || {
            let ok = mem.read_obj::<u8>(GuestAddress(0x10000)).is_ok();
            seen.store(ok, Ordering::SeqCst);
        });
        assert!(finished.recv_timeout(Duration::from_millis(200)).is_err());
        if end_pause_by_revoking {
            dma.tlb().revoke();
        } else {
            dma.tlb().resume();
        }
        finished.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(accessed.load(Ordering::SeqCst), !end_pause_by_revoking);
    }
}
