//! Translations per second through the software SMMUv3: stage 1 only, stage 2 only and
//! nested, each on a TLB hit and a TLB miss, with 4-level walks of 4 KiB pages at both
//! stages (the nested miss walks stage 2 for the CD's TTB tables, each of the four stage-1
//! tables and the output: the worst case, with no stage-2 blocks).
//!
//! - `hit`: the same page again (the per-page cache in front of the TLB answers);
//! - `tlb_hit_after_command`: a no-op CMD_SYNC first, which empties that cache, so the
//!   STE, CD and TLB lookups answer (subtract `command_only`);
//! - `miss`: the stream's translations invalidated first (TLBI_NH_ALL; TLBI_S12_VMALL for
//!   stage 2 only; subtract `invalidate_only`), as after a guest's invalidation: the walk
//!   runs with the STE and CD cached and, nested, stage 2's translations of the stage-1
//!   tables still in the TLB (a guest's invalidation leaves the host's stage 2 alone);
//! - `miss_stage2_too` (nested): TLBI_S12_VMALL first, so every stage-1 table read walks
//!   stage 2 as well: 24 descriptor reads;
//! - `miss_cold`: CFGI_ALL and TLBI_NSNH_ALL first, so the STE and CD are fetched (and,
//!   nested, their addresses translated) too.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use devices::host_iommu::smmuv3::wire::Command;
use devices::host_iommu::smmuv3::{
    Access, Smmuv3, Smmuv3Caps, StreamTableConfig, StreamTableFormat, Transaction,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const RAM: u64 = 64 << 20;
/// Stage 2 maps IPA x to PA x + OFFSET for IPAs below OFFSET.
const OFFSET: u64 = 16 << 20;
const VA: u64 = 0x12_3456_7000;

struct Builder {
    mem: GuestMemoryMmap,
    next: u64,
}

impl Builder {
    fn page(&mut self) -> u64 {
        let p = self.next;
        self.next += 0x1000;
        p
    }

    fn write(&self, addr: u64, v: u64) {
        self.mem.write_obj(v.to_le(), GuestAddress(addr)).unwrap();
    }

    fn read(&self, addr: u64) -> u64 {
        u64::from_le(self.mem.read_obj(GuestAddress(addr)).unwrap())
    }

    /// Maps `va` by a 4 KiB page `leaf` under the 4-level table at `root`; tables are
    /// allocated from `self` and named in descriptors by `pa - offset`.
    fn map(&mut self, root: u64, offset: u64, va: u64, leaf: u64) {
        let mut table = root;
        for level in 0..3 {
            let slot = table + ((va >> (39 - 9 * level)) & 511) * 8;
            let d = self.read(slot);
            table = if d & 3 == 3 {
                (d & 0x0000_ffff_ffff_f000) + offset
            } else {
                let next = self.page();
                self.write(slot, (next - offset) | 3);
                next
            };
        }
        self.write(table + ((va >> 12) & 511) * 8, leaf);
    }
}

/// Stage-1 page: AF, nG, unprivileged read/write.
fn s1_page(oa: u64) -> u64 {
    oa | 3 | 1 << 10 | 1 << 11 | 1 << 6
}

/// Stage-2 page: AF, read, write.
fn s2_page(oa: u64) -> u64 {
    oa | 3 | 1 << 10 | 3 << 6
}

/// CD: T0SZ 16 (48-bit VA, walks from level 0), 4 KiB, IPS 48 bits, V, AA64, R, A,
/// EPD1, ASID 1.
fn cd(ttb0: u64) -> [u64; 2] {
    let d0 = 16 | 1 << 30 | 1 << 31 | 5 << 32 | 1 << 41 | 1 << 45 | 1 << 46 | 1 << 48;
    [d0, ttb0]
}

/// STE dwords 2 and 3: VMID 7, S2T0SZ 16 (48-bit IPA), SL0 2 (level 0), 4 KiB, PS 48
/// bits, AA64, S2R.
fn stage2(ttb: u64) -> [u64; 2] {
    [7 | 16 << 32 | 2 << 38 | 5 << 48 | 1 << 51 | 1 << 58, ttb]
}

fn setup() -> Smmuv3<GuestMemoryMmap> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    // Stage-1 tables and CDs at [16, 32) MiB (IPA = PA - 16 MiB), stage-2 tables above.
    let mut s1 = Builder {
        mem: mem.clone(),
        next: OFFSET,
    };
    let mut s2 = Builder {
        mem: mem.clone(),
        next: 2 * OFFSET,
    };
    let stream_table = s2.page();

    // Stream 1: stage 1 only.
    let root = s1.page();
    let cd_pa = s1.page();
    s1.write_all(cd_pa, &cd(root));
    s1.map(root, 0, VA, s1_page(0x40_0000));
    s1.write_all(stream_table + 64, &[1 | 0b101 << 1 | cd_pa]);

    // Stream 2: stage 2 only, IPA [0, 16 MiB) by 4 KiB pages; stream 3: nested through it.
    let s2_root = s2.page();
    for ipa in (0..OFFSET).step_by(0x1000) {
        s2.map(s2_root, 0, ipa, s2_page(ipa + OFFSET));
    }
    let [d2, d3] = stage2(s2_root);
    s2.write_all(stream_table + 2 * 64, &[1 | 0b110 << 1, 0, d2, d3]);
    let nested_root = s1.page();
    let nested_cd = s1.page();
    s1.write_all(nested_cd, &cd(nested_root - OFFSET));
    s1.map(nested_root, OFFSET, VA, s1_page(0x40_0000));
    s1.write_all(
        stream_table + 3 * 64,
        &[1 | 0b111 << 1 | (nested_cd - OFFSET), 0, d2, d3],
    );

    let smmu = Smmuv3::new(mem, Smmuv3Caps::default()).unwrap();
    smmu.set_stream_table(Some(StreamTableConfig {
        base: stream_table,
        log2_size: 4,
        format: StreamTableFormat::Linear,
    }));
    smmu
}

impl Builder {
    fn write_all(&self, addr: u64, dwords: &[u64]) {
        for (i, d) in dwords.iter().enumerate() {
            self.write(addr + 8 * i as u64, *d);
        }
    }
}

const TLBI_NSNH_ALL: Command = Command([0x30, 0]);
const TLBI_NH_ALL_VMID0: Command = Command([0x10, 0]);
const TLBI_NH_ALL_VMID7: Command = Command([0x10 | 7 << 32, 0]);
const TLBI_S12_VMALL_VMID7: Command = Command([0x28 | 7 << 32, 0]);
const CFGI_ALL: Command = Command([0x04, 31]);
const SYNC_NO_SIGNAL: Command = Command([0x46, 0]);

fn translations(c: &mut Criterion) {
    let smmu = setup();
    let mut group = c.benchmark_group("smmuv3");
    group.throughput(Throughput::Elements(1));
    let expected = [
        (1, 0x40_0000),
        (2, VA - 0x12_3400_0000),
        (3, 0x40_0000 + OFFSET),
    ];
    for (sid, name) in [(1u32, "stage1"), (2, "stage2"), (3, "nested")] {
        let address = if sid == 2 { VA - 0x12_3400_0000 } else { VA };
        let t = Transaction {
            sid,
            ssid: None,
            address,
            access: Access::READ,
        };
        let out = smmu.translate(&t).expect("bench tables translate");
        assert_eq!(
            out.output_of(address),
            expected[sid as usize - 1].1 + if sid == 2 { OFFSET } else { 0 }
        );
        group.bench_function(format!("{name}/hit"), |b| {
            b.iter(|| smmu.translate(std::hint::black_box(&t)).unwrap())
        });
        group.bench_function(format!("{name}/tlb_hit_after_command"), |b| {
            b.iter(|| {
                smmu.execute(&[SYNC_NO_SIGNAL]).unwrap();
                smmu.translate(std::hint::black_box(&t)).unwrap()
            })
        });
        let invalidate = match sid {
            1 => TLBI_NH_ALL_VMID0,
            2 => TLBI_S12_VMALL_VMID7,
            _ => TLBI_NH_ALL_VMID7,
        };
        group.bench_function(format!("{name}/miss"), |b| {
            b.iter(|| {
                smmu.execute(&[invalidate]).unwrap();
                smmu.translate(std::hint::black_box(&t)).unwrap()
            })
        });
        if sid == 3 {
            group.bench_function(format!("{name}/miss_stage2_too"), |b| {
                b.iter(|| {
                    smmu.execute(&[TLBI_S12_VMALL_VMID7]).unwrap();
                    smmu.translate(std::hint::black_box(&t)).unwrap()
                })
            });
        }
        group.bench_function(format!("{name}/miss_cold"), |b| {
            b.iter(|| {
                smmu.execute(&[CFGI_ALL, TLBI_NSNH_ALL]).unwrap();
                smmu.translate(std::hint::black_box(&t)).unwrap()
            })
        });
    }
    group.bench_function("command_only", |b| {
        b.iter(|| smmu.execute(&[SYNC_NO_SIGNAL]).unwrap())
    });
    group.bench_function("invalidate_only", |b| {
        b.iter(|| smmu.execute(&[TLBI_NH_ALL_VMID7]).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = translations
}
criterion_main!(benches);
