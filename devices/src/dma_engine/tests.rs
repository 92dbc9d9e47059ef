//! The engine driven as a guest driver would, and as a hostile one would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, Permissions};

use super::descriptor::*;
use super::registers::*;
use super::DmaEngine;
use crate::dma::{DeviceDma, DeviceTlb, DmaAddressSpace, DmaFault, TlbEntries};
use crate::pci::msix::tests::RecordingGroup;
use crate::pci::{Bdf, PciDevice};
use crate::virtio::WorkerSpec;

pub(super) const RING: u64 = 0x1000;
pub(super) const SLOTS: u32 = 8;
pub(super) const SRC: u64 = 0x10000;
pub(super) const DST: u64 = 0x20000;
const BAR: u64 = 0xc000_0000;
const COMMAND_REG: usize = 1;
const BUS_MASTER_AND_MEMORY: u32 = 0x6;

/// IOVA ranges mapped to guest-physical ones, changed by the test like an IOMMU would.
#[derive(Debug, Default)]
pub(super) struct Mappings(pub(super) Mutex<Vec<(u64, u64, u64, Permissions)>>);

impl DmaAddressSpace for Mappings {
    fn fill(
        &self,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault> {
        let maps = self.0.lock().unwrap();
        let mut at = iova;
        let end = iova.checked_add(len).ok_or(DmaFault::Unmapped { iova })?;
        while at < end {
            let &(start, size, gpa, perm) = maps
                .iter()
                .find(|(s, n, _, _)| (*s..*s + *n).contains(&at))
                .ok_or(DmaFault::Unmapped { iova: at })?;
            if !perm.allow(access) {
                return Err(DmaFault::Forbidden { iova: at });
            }
            tlb.insert(start, start + size - 1, gpa, perm);
            at = start + size;
        }
        Ok(())
    }
}

pub(super) struct Harness {
    pub(super) engine: DmaEngine,
    pub(super) ram: GuestMemoryMmap,
    interrupts: Arc<RecordingGroup>,
    tlb: Arc<DeviceTlb>,
}

fn ram() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
}

impl Harness {
    fn new(dma: DeviceDma) -> Self {
        Self::with_translation(dma, false)
    }

    /// `nested`: the engine is in nested translation (`iommu=nested`).
    pub(super) fn with_translation(dma: DeviceDma, nested: bool) -> Self {
        let ram = ram();
        let interrupts = Arc::new(RecordingGroup::default());
        let tlb = dma.tlb().clone();
        let mut engine = DmaEngine::new(
            Bdf::new(0, 3, 0),
            ram.clone(),
            interrupts.clone(),
            BAR,
            dma,
            WorkerSpec::unconfined("dev-dma-test"),
        )
        .unwrap();
        if nested {
            engine = engine.with_nested_translation();
        }
        Self {
            engine,
            ram,
            interrupts,
            tlb,
        }
    }

    /// The same harness with its engine changed by `f` (before it is brought up).
    pub(super) fn map_engine(self, f: impl FnOnce(DmaEngine) -> DmaEngine) -> Self {
        Self {
            engine: f(self.engine),
            ..self
        }
    }

    fn untranslated() -> Self {
        Self::new(DeviceDma::untranslated())
    }

    /// Identity-maps the ring and maps IOVA 0x8000_0000.. onto SRC and DST pages.
    fn translated() -> (Self, Arc<Mappings>) {
        let maps = Arc::new(Mappings::default());
        maps.0.lock().unwrap().extend([
            (RING, 0x1000, RING, Permissions::ReadWrite),
            (0x8000_0000, 0x1000, SRC, Permissions::Read),
            (0x8000_1000, 0x1000, DST, Permissions::ReadWrite),
        ]);
        let tlb = DeviceTlb::new();
        (Self::new(DeviceDma::translated(tlb, maps.clone())), maps)
    }

    pub(super) fn write(&mut self, offset: u64, value: u32) {
        self.engine
            .write_bar(BAR_INDEX, offset, &value.to_le_bytes());
    }

    pub(super) fn read(&mut self, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        self.engine.read_bar(BAR_INDEX, offset, &mut data);
        u32::from_le_bytes(data)
    }

    pub(super) fn config_write(&mut self, reg: usize, value: u32) {
        self.engine
            .write_config_register(reg, 0, &value.to_le_bytes());
    }

    /// MSI-X on with vector 0 unmasked, bus mastering on.
    pub(super) fn bring_up(&mut self) {
        let msix_reg = 0x40 / 4;
        let control = self.engine.read_config_register(msix_reg);
        self.config_write(msix_reg, control | 1 << 31);
        let mut entry = [0u8; 16];
        entry[..8].copy_from_slice(&0xfee0_0000u64.to_le_bytes());
        entry[8..12].copy_from_slice(&0x31u32.to_le_bytes());
        for (i, dword) in entry.chunks(4).enumerate() {
            self.engine
                .write_bar(BAR_INDEX, MSIX_TABLE_OFFSET + 4 * i as u64, dword);
        }
        self.config_write(COMMAND_REG, BUS_MASTER_AND_MEMORY);
    }

    fn configure_ring(&mut self, base: u64, slots: u32) {
        self.write(RING_BASE_LO, base as u32);
        self.write(RING_BASE_HI, (base >> 32) as u32);
        self.write(RING_SLOTS, slots);
    }

    pub(super) fn enable(&mut self) {
        self.configure_ring(RING, SLOTS);
        self.write(CONTROL, CONTROL_ENABLE);
        assert_eq!(self.read(ERROR), 0);
    }

    pub(super) fn post(&self, index: u32, job: JobDescriptor) {
        let slot = RING + u64::from(index % SLOTS) * SLOT_SIZE;
        self.ram
            .write_slice(&job.to_le_bytes(), GuestAddress(slot))
            .unwrap();
        self.ram
            .write_slice(
                &[0u8; COMPLETION_SIZE],
                GuestAddress(slot + COMPLETION_OFFSET),
            )
            .unwrap();
    }

    pub(super) fn completion(&self, index: u32) -> Completion {
        let slot = RING + u64::from(index % SLOTS) * SLOT_SIZE;
        let mut bytes = [0u8; COMPLETION_SIZE];
        self.ram
            .read_slice(&mut bytes, GuestAddress(slot + COMPLETION_OFFSET))
            .unwrap();
        Completion::from_le_bytes(&bytes)
    }

    /// Waits until HEAD reads `head` (or the engine halts).
    pub(super) fn wait_head(&mut self, head: u32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.read(HEAD) != head && self.read(STATUS) & STATUS_HALTED == 0 {
            assert!(
                Instant::now() < deadline,
                "HEAD stuck at {}",
                self.read(HEAD)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_halt(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.read(STATUS) & STATUS_HALTED == 0 {
            assert!(Instant::now() < deadline, "the engine did not halt");
            std::thread::sleep(Duration::from_millis(1));
        }
        self.read(ERROR)
    }

    fn fired(&self) -> usize {
        self.interrupts.fired.lock().unwrap().len()
    }
}

fn copy(source: u64, destination: u64, length: u64) -> JobDescriptor {
    JobDescriptor {
        opcode: OP_COPY,
        flags: FLAG_INTERRUPT,
        source,
        destination,
        length,
        ..Default::default()
    }
}

pub(super) fn fill(destination: u64, length: u64, pattern: u64) -> JobDescriptor {
    JobDescriptor {
        opcode: OP_FILL,
        flags: FLAG_INTERRUPT,
        destination,
        length,
        pattern,
        ..Default::default()
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn identification_and_limits_read_back_and_ignore_writes() {
    let mut h = Harness::untranslated();
    for offset in [MAGIC, VERSION, MAX_RING_SLOTS, MAX_JOB_BYTES, HEAD, ERROR] {
        let before = h.read(offset);
        h.write(offset, 0xdead_beef);
        assert_eq!(h.read(offset), before, "register {offset:#x}");
    }
    assert_eq!(h.read(MAGIC), u32::from_le_bytes(*b"NDMA"));
    assert_eq!(h.read(VERSION), 1);
    assert_eq!(h.read(MAX_RING_SLOTS), 4096);
    assert_eq!(h.read(MAX_JOB_BYTES), 1 << 20);
    assert_eq!(h.read(STATUS), STATUS_IDLE);
}

#[test]
fn copy_and_fill_run_complete_and_interrupt() {
    let mut h = Harness::untranslated();
    h.bring_up();
    h.enable();
    let data = pattern(0x3000);
    h.ram.write_slice(&data, GuestAddress(SRC)).unwrap();
    h.post(0, copy(SRC, DST, 0x3000));
    h.post(1, fill(DST + 0x3000, 13, 0x0807_0605_0403_0201));
    h.write(DOORBELL, 2);
    h.wait_head(2);
    assert_eq!(h.read(DOORBELL), 2);
    assert_eq!(
        h.completion(0),
        Completion {
            status: JobStatus::Ok as u32,
            bytes_done: 0x3000,
            ..Default::default()
        }
    );
    assert_eq!(h.completion(1).status, JobStatus::Ok as u32);
    let mut out = vec![0u8; 0x3000 + 16];
    h.ram.read_slice(&mut out, GuestAddress(DST)).unwrap();
    assert_eq!(&out[..0x3000], &data[..]);
    assert_eq!(
        &out[0x3000..],
        &[1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 0, 0, 0]
    );
    assert!(h.fired() >= 1);
    assert_eq!(h.read(STATUS), STATUS_ENABLED | STATUS_IDLE);
    let counts = h.engine.counters().snapshot();
    assert_eq!((counts.requests, counts.errors), (2, 0));
    assert_eq!(
        (counts.read_bytes, counts.written_bytes),
        (0x3000, 0x3000 + 13)
    );
}

#[test]
fn a_job_larger_than_a_chunk_moves_whole() {
    let mut h = Harness::untranslated();
    h.bring_up();
    h.enable();
    let len = 0x2_0000 + 0x123;
    let data = pattern(len);
    h.ram.write_slice(&data, GuestAddress(0x40000)).unwrap();
    h.post(0, copy(0x40000, 0x80000, len as u64));
    h.write(DOORBELL, 1);
    h.wait_head(1);
    assert_eq!(h.completion(0).status, JobStatus::Ok as u32);
    let mut out = vec![0u8; len];
    h.ram.read_slice(&mut out, GuestAddress(0x80000)).unwrap();
    assert!(out == data);
}

#[test]
fn bad_descriptors_are_answered_and_the_ring_goes_on() {
    let mut h = Harness::untranslated();
    h.bring_up();
    h.enable();
    let jobs = [
        (
            JobDescriptor {
                opcode: 9,
                ..copy(SRC, DST, 8)
            },
            JobStatus::BadOpcode,
        ),
        (copy(SRC, DST, 0), JobStatus::BadDescriptor),
        (copy(SRC, DST, MAX_JOB_LEN + 1), JobStatus::BadDescriptor),
        (copy(SRC, SRC + 4, 8), JobStatus::BadDescriptor),
        (
            JobDescriptor {
                flags: FLAG_PASID,
                pasid: 7,
                ..copy(SRC, DST, 8)
            },
            JobStatus::PasidUnsupported,
        ),
        // Outside guest RAM, untranslated.
        (copy(0x4000_0000, DST, 8), JobStatus::MemoryFault),
        (fill(u64::MAX - 7, 8, 0), JobStatus::MemoryFault),
        (fill(DST, 8, 0x55), JobStatus::Ok),
    ];
    for (i, (job, _)) in jobs.iter().enumerate() {
        h.post(i as u32, *job);
    }
    h.write(DOORBELL, jobs.len() as u32);
    h.wait_head(jobs.len() as u32);
    for (i, (_, want)) in jobs.iter().enumerate() {
        assert_eq!(h.completion(i as u32).status, *want as u32, "job {i}");
    }
    let fault = h.completion(5);
    assert_eq!((fault.fault_flags, fault.fault_address), (0, 0x4000_0000));
    assert_eq!(h.completion(6).fault_flags, FAULT_WRITE);
    assert_eq!(h.read(ERROR), 0);
    let counts = h.engine.counters().snapshot();
    assert_eq!((counts.requests, counts.errors), (8, 7));
    assert_eq!((counts.read_bytes, counts.written_bytes), (0, 8));
}

#[test]
fn a_doorbell_past_the_ring_halts_without_running_anything() {
    let mut h = Harness::untranslated();
    h.bring_up();
    h.enable();
    h.post(0, fill(DST, 8, u64::MAX));
    h.write(DOORBELL, SLOTS + 1);
    assert_eq!(h.wait_halt(), HaltReason::BadDoorbell as u32);
    assert_eq!(h.read(HEAD), 0);
    assert_eq!(h.ram.read_obj::<u64>(GuestAddress(DST)).unwrap(), 0);
    // A later, valid doorbell is ignored until the driver disables and enables again.
    h.write(DOORBELL, 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.read(HEAD), 0);
    h.write(CONTROL, 0);
    h.write(CONTROL, CONTROL_ENABLE);
    assert_eq!(h.read(STATUS), STATUS_ENABLED | STATUS_IDLE);
    h.post(0, fill(DST, 8, u64::MAX));
    h.write(DOORBELL, 1);
    h.wait_head(1);
    assert_eq!(h.ram.read_obj::<u64>(GuestAddress(DST)).unwrap(), u64::MAX);
}

#[test]
fn a_ring_outside_memory_halts_with_ring_fault() {
    let mut h = Harness::untranslated();
    h.bring_up();
    h.configure_ring(0x4000_0000, 4);
    h.write(CONTROL, CONTROL_ENABLE);
    h.write(DOORBELL, 1);
    assert_eq!(h.wait_halt(), HaltReason::RingFault as u32);
    let fired = h.fired();
    assert!(fired >= 1, "a halt interrupts the driver");
}

#[test]
fn invalid_rings_halt_at_enable() {
    for (base, slots) in [
        (RING, 0),
        (RING, 3),
        (RING, 8192),
        (RING + 8, 4),
        (u64::MAX - 63, 2),
    ] {
        let mut h = Harness::untranslated();
        h.bring_up();
        h.configure_ring(base, slots);
        h.write(CONTROL, CONTROL_ENABLE);
        assert_eq!(
            h.read(STATUS) & (STATUS_ENABLED | STATUS_HALTED),
            STATUS_ENABLED | STATUS_HALTED
        );
        assert_eq!(
            h.read(ERROR),
            HaltReason::BadRing as u32,
            "{base:#x} {slots}"
        );
    }
}

#[test]
fn the_ring_is_locked_while_enabled_and_reset_clears_everything() {
    let mut h = Harness::untranslated();
    h.bring_up();
    h.enable();
    h.configure_ring(0x5000, 2);
    assert_eq!(h.read(RING_BASE_LO), RING as u32);
    assert_eq!(h.read(RING_SLOTS), SLOTS);
    h.post(0, fill(DST, 8, 1));
    h.write(DOORBELL, 1);
    h.wait_head(1);
    h.write(CONTROL, CONTROL_RESET | CONTROL_ENABLE);
    for offset in [
        CONTROL,
        RING_BASE_LO,
        RING_BASE_HI,
        RING_SLOTS,
        DOORBELL,
        HEAD,
        ERROR,
    ] {
        assert_eq!(h.read(offset), 0, "register {offset:#x}");
    }
    // The doorbell does nothing while disabled.
    h.write(DOORBELL, 3);
    assert_eq!(h.read(DOORBELL), 0);
}

#[test]
fn register_accesses_of_every_size_and_offset_are_safe() {
    let mut h = Harness::untranslated();
    h.bring_up();
    h.enable();
    let mut state = 0x1234_5678u32;
    for offset in (0..BAR_SIZE + 16).chain([u64::MAX - 8, u64::MAX]) {
        for len in [1usize, 2, 3, 4, 5, 8, 16] {
            // Skip CONTROL and the doorbell: the test keeps the engine enabled and idle.
            if (CONTROL..CONTROL + 4).contains(&offset) || (DOORBELL..HEAD).contains(&offset) {
                continue;
            }
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let data = vec![state as u8; len];
            h.engine.write_bar(BAR_INDEX, offset, &data);
            let mut back = vec![0u8; len];
            h.engine.read_bar(BAR_INDEX, offset, &mut back);
            h.engine.read_bar(1, offset, &mut back);
            h.engine.write_bar(5, offset, &data);
        }
    }
    // Sub-dword and misaligned writes never reached a register.
    assert_eq!(h.read(RING_BASE_LO), RING as u32);
    assert_eq!(h.read(STATUS), STATUS_ENABLED | STATUS_IDLE);
}

#[test]
fn qword_register_access_is_two_dwords() {
    let mut h = Harness::untranslated();
    h.engine
        .write_bar(BAR_INDEX, RING_BASE_LO, &0x1_2345_6740u64.to_le_bytes());
    let mut q = [0u8; 8];
    h.engine.read_bar(BAR_INDEX, RING_BASE_LO, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0x1_2345_6740);
    h.engine.read_bar(BAR_INDEX, MAGIC, &mut q);
    assert_eq!(u64::from_le_bytes(q), 1 << 32 | u64::from(MAGIC_VALUE));
}

#[test]
fn enable_waits_for_bus_mastering_and_clearing_it_pauses() {
    let mut h = Harness::untranslated();
    h.enable();
    h.post(0, fill(DST, 8, 0x11));
    h.write(DOORBELL, 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.read(HEAD), 0, "ran without bus mastering");
    h.bring_up();
    h.wait_head(1);
    h.config_write(COMMAND_REG, 0x2);
    h.post(1, fill(DST, 8, 0x22));
    h.write(DOORBELL, 2);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.read(HEAD), 1, "ran while bus mastering was off");
    h.config_write(COMMAND_REG, BUS_MASTER_AND_MEMORY);
    h.wait_head(2);
    assert_eq!(h.ram.read_obj::<u64>(GuestAddress(DST)).unwrap(), 0x22);
}

#[test]
fn disabling_revokes_the_enabling_s_dma() {
    let mut h = Harness::untranslated();
    h.bring_up();
    h.enable();
    h.write(CONTROL, 0);
    assert!(h.engine.read_config_register(COMMAND_REG) & 0x4 != 0);
    // A new enabling starts over at job 0.
    h.write(CONTROL, CONTROL_ENABLE);
    h.post(0, fill(DST, 8, 0x33));
    h.write(DOORBELL, 1);
    h.wait_head(1);
    assert_eq!(h.completion(0).status, JobStatus::Ok as u32);
}

#[test]
fn translated_jobs_fault_after_unmap_and_write_nothing() {
    let (mut h, maps) = Harness::translated();
    h.bring_up();
    h.enable();
    let data = pattern(0x1000);
    h.ram.write_slice(&data, GuestAddress(SRC)).unwrap();
    h.post(0, copy(0x8000_0000, 0x8000_1000, 0x1000));
    h.write(DOORBELL, 1);
    h.wait_head(1);
    assert_eq!(h.completion(0).status, JobStatus::Ok as u32);
    let mut out = vec![0u8; 0x1000];
    h.ram.read_slice(&mut out, GuestAddress(DST)).unwrap();
    assert!(out == data);

    // A write to a read-only mapping is a translation fault too.
    h.post(1, fill(0x8000_0000, 8, 0));
    // Unmap the destination as an IOMMU would: state first, then the IOTLB.
    maps.0.lock().unwrap().retain(|m| m.0 != 0x8000_1000);
    h.tlb.invalidate_range(0x8000_1000, 0x8000_1fff);
    h.ram
        .write_slice(&[0u8; 0x1000], GuestAddress(DST))
        .unwrap();
    h.post(2, fill(0x8000_1000, 0x1000, u64::MAX));
    h.post(3, copy(0x8000_0000, 0x8000_1000, 0x10));
    h.write(DOORBELL, 4);
    h.wait_head(4);
    for index in [1, 2, 3] {
        let c = h.completion(index);
        assert_eq!(c.status, JobStatus::TranslationFault as u32, "job {index}");
        assert_eq!((c.fault_flags, c.bytes_done), (FAULT_WRITE, 0));
    }
    assert_eq!(h.completion(2).fault_address, 0x8000_1000);
    h.ram.read_slice(&mut out, GuestAddress(DST)).unwrap();
    assert!(out.iter().all(|&b| b == 0), "a faulted job wrote");
    assert_eq!(h.read(ERROR), 0);
}

#[test]
fn an_unmapped_ring_halts_a_translated_engine() {
    let (mut h, maps) = Harness::translated();
    h.bring_up();
    h.enable();
    maps.0.lock().unwrap().clear();
    h.tlb.invalidate_all();
    h.write(DOORBELL, 1);
    assert_eq!(h.wait_halt(), HaltReason::RingFault as u32);
}

#[test]
fn capabilities_chain_through_standard_and_extended_space() {
    let mut h = Harness::untranslated();
    let id = h.engine.read_config_register(0);
    assert_eq!(id, 0x00f0_1b36);
    let mut at = h.engine.read_config_register(13) as usize & 0xfc;
    let mut seen = Vec::new();
    while at != 0 {
        let header = h.engine.read_config_register(at / 4);
        seen.push(header as u8);
        if header as u8 == 0x10 {
            // RCiEP, version 2.
            assert_eq!(header >> 16, 0x0092);
        }
        at = (header >> 8) as usize & 0xfc;
    }
    assert_eq!(seen, [0x11, 0x10]);
    let mut at = 0x100;
    let mut extended = Vec::new();
    while at != 0 {
        let header = h.engine.read_config_register(at / 4);
        extended.push((header & 0xffff, at));
        at = (header >> 20) as usize;
    }
    let ids: Vec<u32> = extended.iter().map(|e| e.0).collect();
    assert_eq!(ids, [0x1b, 0x0f, 0x13]);
    // PASID: 20-bit width, Enable writable and read back.
    let pasid = extended[0].1 / 4 + 1;
    assert_eq!(h.engine.read_config_register(pasid), 0x1400);
    h.config_write(pasid, u32::MAX);
    assert_eq!(h.engine.read_config_register(pasid), 0x0001_1400);
    // ATS: STU and Enable writable.
    let ats = extended[1].1 / 4 + 1;
    h.config_write(ats, u32::MAX);
    assert_eq!(h.engine.read_config_register(ats) >> 16, 0x801f);
}

/// Identity for untagged accesses; a tagged one reaches IOVA + PASID pages.
#[derive(Debug, Default)]
struct PerPasid;

impl DmaAddressSpace for PerPasid {
    fn fill(
        &self,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault> {
        self.fill_pasid(tlb, None, iova, len, access)
    }

    fn fill_pasid(
        &self,
        tlb: &mut TlbEntries,
        pasid: Option<u32>,
        _iova: u64,
        _len: u64,
        _access: Permissions,
    ) -> Result<(), DmaFault> {
        let shift = u64::from(pasid.unwrap_or(0)) * 0x1000;
        tlb.insert(0, 0xf_ffff, shift, Permissions::ReadWrite);
        Ok(())
    }
}

/// Config-space register of the PASID capability's Capability and Control registers.
fn pasid_control_reg(engine: &mut DmaEngine) -> usize {
    let mut offset = 0x100;
    loop {
        let header = engine.read_config_register(offset / 4);
        if header & 0xffff == u32::from(super::capabilities::PASID_CAPABILITY_ID) {
            return offset / 4 + 1;
        }
        offset = (header >> 20) as usize;
        assert_ne!(offset, 0, "no PASID capability");
    }
}

#[test]
fn in_nested_translation_jobs_carry_their_pasid_while_pasid_enable_is_set() {
    let tagged = |pasid| JobDescriptor {
        flags: FLAG_INTERRUPT | FLAG_PASID,
        pasid,
        ..fill(DST, 8, 0x1111_1111_1111_1111 * u64::from(pasid))
    };
    let mut h = Harness::with_translation(
        DeviceDma::translated(DeviceTlb::new(), Arc::new(PerPasid)),
        true,
    );
    h.bring_up();
    h.enable();
    h.post(0, tagged(2));
    h.write(DOORBELL, 1);
    h.wait_head(1);
    assert_eq!(h.completion(0).status, JobStatus::PasidUnsupported as u32);

    h.write(CONTROL, 0);
    let reg = pasid_control_reg(&mut h.engine);
    let control = h.engine.read_config_register(reg);
    h.config_write(reg, control | 1 << 16);
    h.enable();
    h.post(0, tagged(2));
    h.post(1, tagged(3));
    h.post(2, fill(DST, 8, 0x4444_4444_4444_4444));
    h.write(DOORBELL, 3);
    h.wait_head(3);
    for i in 0..3 {
        assert_eq!(h.completion(i).status, JobStatus::Ok as u32, "job {i}");
    }
    for (gpa, byte) in [(DST + 0x2000, 0x22u8), (DST + 0x3000, 0x33), (DST, 0x44)] {
        let mut out = [0u8; 8];
        h.ram.read_slice(&mut out, GuestAddress(gpa)).unwrap();
        assert_eq!(out, [byte; 8], "at {gpa:#x}");
    }
}

#[test]
fn without_nested_translation_pasid_enable_changes_nothing() {
    let mut h = Harness::untranslated();
    let reg = pasid_control_reg(&mut h.engine);
    let control = h.engine.read_config_register(reg);
    h.config_write(reg, control | 1 << 16);
    h.bring_up();
    h.enable();
    h.post(
        0,
        JobDescriptor {
            flags: FLAG_PASID,
            pasid: 1,
            ..fill(DST, 8, 1)
        },
    );
    h.write(DOORBELL, 1);
    h.wait_head(1);
    assert_eq!(h.completion(0).status, JobStatus::PasidUnsupported as u32);
}
