//! The DMA engine's job ring with hostile contents: raw and near-valid descriptors, lengths
//! around the chunk and job limits, addresses in RAM, across its hole, past its end and near
//! 2^64, doorbells past the ring, over guest-physical addressing or IOVA mappings with
//! read-only and write-only ranges and pieces outside RAM. Checked against the reference
//! model in `dma_engine_model`:
//! - the engine completes exactly the jobs the model does and halts when and why it does;
//! - guest memory afterwards is what the model wrote, byte for byte, so a job writes nothing
//!   it was not asked to and nothing through a refused translation.
#![no_main]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use devices::dma::{DeviceDma, DeviceTlb, DmaAddressSpace, DmaFault, TlbEntries};
use devices::dma_engine::registers::RingConfig;
use devices::dma_engine::ring::{Progress, RingRunner};
use devices::pci::msix::MsixState;
use libfuzzer_sys::fuzz_target;
use nestor_fuzz::dma_engine_model::*;
use nestor_fuzz::guest::{poke, ram, reachable, Shadow, HIGH_START, LOW_END, RAM_END};
use nestor_fuzz::input::Input;
use nestor_fuzz::interrupts::RecordingGroup;
use vm_memory::{GuestMemoryMmap, Permissions};

const WINDOW: u64 = 0x1_0000_0000;

/// The mappings as an address space for the real engine.
#[derive(Debug)]
struct Mapped(Vec<Mapping>);

impl DmaAddressSpace for Mapped {
    fn fill(
        &self,
        tlb: &mut TlbEntries,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(), DmaFault> {
        let end = iova.checked_add(len).ok_or(DmaFault::Unmapped { iova })?;
        let mut at = iova;
        while at < end {
            let m = self
                .0
                .iter()
                .find(|m| at >= m.iova && at - m.iova < m.len)
                .ok_or(DmaFault::Unmapped { iova: at })?;
            let perm = match (m.read, m.write) {
                (true, true) => Permissions::ReadWrite,
                (true, false) => Permissions::Read,
                _ => Permissions::Write,
            };
            if !perm.allow(access) {
                return Err(DmaFault::Forbidden { iova: at });
            }
            tlb.insert(m.iova, m.iova + m.len - 1, m.gpa, perm);
            at = m.iova + m.len;
        }
        Ok(())
    }
}

fn mappings(input: &mut Input) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = Vec::new();
    for i in 0..1 + input.below(4) as u64 {
        // Right after the previous one (an access may span both) or in a window of its own.
        let iova = match maps.last() {
            Some(last) if input.bool() => last.iova + last.len,
            _ => WINDOW * (1 + i),
        };
        let (read, write) = input.pick(&[(true, true), (true, false), (false, true)]);
        maps.push(Mapping {
            iova,
            len: 0x1000 * (1 + input.below(32) as u64),
            // Up to past RAM's end, some across the hole.
            gpa: 0x1000 * input.below(80) as u64,
            read,
            write,
        });
    }
    maps
}

fn address(input: &mut Input, addressing: &Addressing) -> u64 {
    match (input.below(4), addressing) {
        (0, _) => u64::from(input.u32()) % (RAM_END + 0x2000),
        (1, Addressing::Mapped(maps)) => {
            let m = maps[input.below(maps.len())];
            m.iova + u64::from(input.u16()) % (m.len + 0x100)
        }
        (1, Addressing::Physical) => HIGH_START - u64::from(input.u16() % 0x100),
        (2, _) => u64::MAX - u64::from(input.u16()),
        _ => input.u64(),
    }
}

fn length(input: &mut Input) -> u64 {
    match input.below(5) {
        0 => 1 + u64::from(input.u8()),
        1 => u64::from(input.u16()),
        2 => CHUNK - 8 + u64::from(input.u8()),
        3 => input.pick(&[MAX_JOB, MAX_JOB + 1, 2 * CHUNK + 1]),
        _ => input.u64(),
    }
}

fn descriptor(input: &mut Input, addressing: &Addressing) -> [u8; 40] {
    let mut d = [0u8; 40];
    if input.below(4) == 0 {
        d.iter_mut().for_each(|b| *b = input.u8());
        return d;
    }
    d[0] = input.pick(&[1, 1, 2, 2, 0, 3, 0xff]);
    d[1] = input.pick(&[0, 1, 0, 1, 2, 3, 0x80]);
    if input.below(8) == 0 {
        d[2..4].copy_from_slice(&input.u16().to_le_bytes());
    }
    if input.below(8) == 0 {
        d[4..8].copy_from_slice(&input.u32().to_le_bytes());
    }
    d[8..16].copy_from_slice(&address(input, addressing).to_le_bytes());
    d[16..24].copy_from_slice(&address(input, addressing).to_le_bytes());
    d[24..32].copy_from_slice(&length(input).to_le_bytes());
    d[32..40].copy_from_slice(&input.u64().to_le_bytes());
    d
}

/// Writes `data` where the driver's address `addr` lands, if it is all RAM.
fn driver_write(ram: &GuestMemoryMmap, addressing: &Addressing, addr: u64, data: &[u8]) {
    let Some(pieces) = addressing.driver_pieces(addr, data.len() as u64) else {
        return;
    };
    let mut done = 0;
    for (gpa, n) in pieces {
        debug_assert!(reachable(gpa, n));
        poke(ram, gpa, &data[done..done + n as usize]);
        done += n as usize;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let ram = ram();
    let low: Vec<u8> = (0..LOW_END).map(|i| (i * 13 + i / 251) as u8).collect();
    poke(&ram, 0, &low);
    let addressing = if input.bool() {
        Addressing::Mapped(mappings(&mut input))
    } else {
        Addressing::Physical
    };
    let slots = input.pick(&[1u32, 2, 4, 8]);
    let base = match &addressing {
        Addressing::Mapped(maps) if input.bool() => {
            maps[input.below(maps.len())].iova + SLOT * input.below(16) as u64
        }
        _ => SLOT * (u64::from(input.u32()) % (RAM_END / SLOT + 64)),
    };
    let ring = RingConfig { base, slots };
    if ring.validate().is_err() {
        return;
    }
    let jobs = input.below(slots as usize + 1) as u32;
    for index in 0..jobs {
        let d = descriptor(&mut input, &addressing);
        driver_write(&ram, &addressing, ring.slot_address(index), &d);
    }
    let tail = if input.below(8) == 0 {
        input.u32()
    } else {
        jobs
    };
    let budget = 1 + input.below(4);

    let mut expected = Shadow::of(&ram);
    let dma = match &addressing {
        Addressing::Physical => DeviceDma::untranslated(),
        Addressing::Mapped(maps) => {
            DeviceDma::translated(DeviceTlb::new(), Arc::new(Mapped(maps.clone())))
        }
    };
    let progress = Arc::new(Progress::default());
    progress.tail.store(tail, Ordering::Release);
    let msix = Arc::new(Mutex::new(MsixState::new(
        1,
        Arc::new(RecordingGroup::default()),
    )));
    let mut runner = RingRunner::new(ring, dma.memory(ram.clone()), progress.clone(), msix);
    // Eight slots at most, at least one job a call: nine calls always finish.
    let finished = (0..9).any(|_| !runner.serve(budget));
    assert!(
        finished,
        "the engine still has work after a ring's worth of calls"
    );

    let mut model = EngineModel {
        addressing: &addressing,
        ram: &mut expected,
    };
    let want = model.serve(base, slots, tail);
    let got = Outcome {
        head: progress.head.load(Ordering::Acquire),
        halted: progress.halted.load(Ordering::Acquire),
    };
    assert_eq!(got, want, "head and halt");
    expected.assert_matches(&Shadow::of(&ram), &[], "guest memory after the ring");
});
