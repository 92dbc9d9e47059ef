//! Guest-written SMMUv3 configuration and translation tables (STEs, CDs, stage-1 and
//! stage-2 descriptors of every kind, with any bits), translations of any address and
//! access, and commands of any kind, through the software SMMUv3. Checked:
//! - a translation covers the address it was asked for and permits the access;
//! - caching never shows: once the tables last written are followed by CFGI_ALL and
//!   TLBI_NSNH_ALL, every translation the model gives (from its TLB, walk cache and
//!   configuration caches, whatever commands came between) equals what a second model
//!   with nothing cached gives for the same tables, down to the fault's event;
//! - nothing hangs or panics.
//!
//! Each stream has its own VMID and its CD its own ASID, and there are no substreams, so
//! no two streams may legitimately share a cached translation.
#![no_main]

use devices::host_iommu::smmuv3::wire::Command;
use devices::host_iommu::smmuv3::{
    Access, Smmuv3, Smmuv3Caps, StreamTableConfig, StreamTableFormat, Transaction,
};
use libfuzzer_sys::fuzz_target;
use nestor_fuzz::input::Input;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const RAM: u64 = 1 << 20;
const STREAMS: u32 = 4;
const CDS: u64 = 0x1000;
const TABLES: u64 = 0x1_0000;
const TABLE_PAGES: u64 = 64;
const MAX_OPS: usize = 400;
const CFGI_ALL: Command = Command([0x04, 31]);
const TLBI_NSNH_ALL: Command = Command([0x30, 0]);

fn write(mem: &GuestMemoryMmap, addr: u64, value: u64) {
    mem.write_obj(value.to_le(), GuestAddress(addr)).unwrap();
}

fn table_page(input: &mut Input) -> u64 {
    TABLES + input.below(TABLE_PAGES as usize) as u64 * 0x1000
}

/// An STE for `sid`: mostly well-formed, with fuzzed choices; VMID = sid.
fn ste(input: &mut Input, sid: u32) -> [u64; 4] {
    let config = input.pick(&[0b100u64, 0b101, 0b110, 0b111, 0b000, 0b011]);
    let valid = u64::from(input.u8() != 0);
    let d0 = valid | config << 1 | (CDS + u64::from(sid) * 64);
    let d1 = u64::from(input.bool()) << 27; // S1STALLD
    let any = u64::from(input.u8() & 63);
    let t0sz = input.pick(&[25u64, 16, 34, 24, any]);
    let sl0 = u64::from(input.u8() & 3);
    let tg = input.pick(&[0u64, 0, 1, 2, 3]);
    let ps = u64::from(input.u8() % 8);
    let flags = u64::from(input.u8());
    let d2 = u64::from(sid)
        | t0sz << 32
        | sl0 << 38
        | tg << 46
        | ps << 48
        | u64::from(flags & 1 == 0) << 51 // S2AA64, mostly set
        | (flags >> 1 & 1) << 53 // S2AFFD
        | (flags >> 2 & 1) << 57 // S2S
        | (flags >> 3 & 1) << 58; // S2R
    [d0, d1, d2, table_page(input)]
}

/// A CD for `sid`: ASID = sid + 1.
fn cd(input: &mut Input, sid: u32) -> [u64; 2] {
    let any = u64::from(input.u8() & 63);
    let t0sz = input.pick(&[16u64, 25, 34, 39, any]);
    let tg0 = input.pick(&[0u64, 0, 1, 2, 3]);
    let flags = u64::from(input.u16());
    let d0 = t0sz
        | tg0 << 6
        | (flags & 1) << 14 // EPD0
        | 1 << 30 // EPD1
        | u64::from(flags & 2 == 0) << 31 // V, mostly set
        | (flags >> 2 & 7) << 32 // IPS
        | (flags >> 5 & 1) << 35 // AFFD
        | (flags >> 6 & 1) << 36 // WXN
        | (flags >> 7 & 3) << 38 // TBI
        | u64::from(flags & 0x200 == 0) << 41 // AA64, mostly set
        | (flags >> 10 & 1) << 44 // S
        | (flags >> 11 & 1) << 45 // R
        | (flags >> 12 & 1) << 46 // A
        | (u64::from(sid) + 1) << 48;
    [d0, table_page(input) | (flags >> 13 & 1) << 1]
}

/// A descriptor: a table pointer, a block or page, or raw bits.
fn descriptor(input: &mut Input) -> u64 {
    match input.below(4) {
        0 => table_page(input) | 3 | u64::from(input.u8() >> 3) << 59,
        1 | 2 => {
            let oa = u64::from(input.u32()) << 12 & 0x0000_ffff_ffff_f000;
            let attrs = u64::from(input.u16()) & 0xffc;
            let upper = u64::from(input.u8() & 3) << 53;
            oa | attrs | upper | if input.bool() { 3 } else { 1 }
        }
        _ => input.u64(),
    }
}

fn command(input: &mut Input) -> Command {
    let opcode = input.pick(&[
        0x03u64, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x28, 0x2a, 0x30, 0x44, 0x45, 0x46, 0xff,
    ]);
    let sid = input.below(STREAMS as usize + 1) as u64;
    let vmid_or_sid = if input.bool() {
        sid << 32
    } else {
        u64::from(input.u16()) << 32
    };
    let asid = input.below(STREAMS as usize + 2) as u64;
    let d0 = opcode | u64::from(input.u32() & 0xf_ffff) << 12 | vmid_or_sid | asid << 48;
    let d1 = if input.bool() {
        u64::from(input.u32()) << 12
    } else {
        input.u64()
    };
    Command([d0, d1])
}

fn access(input: &mut Input) -> Access {
    let b = input.u8();
    Access {
        write: b & 1 != 0,
        privileged: b & 2 != 0,
        instruction: b & 4 != 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let caps = Smmuv3Caps {
        max_stalls: 4,
        event_queue_depth: 8,
        tlb_entries: 64,
        ..Smmuv3Caps::default()
    };
    let cached = Smmuv3::new(mem.clone(), caps).unwrap();
    let fresh = Smmuv3::new(mem.clone(), caps).unwrap();
    let table = StreamTableConfig {
        base: 0,
        log2_size: 4,
        format: StreamTableFormat::Linear,
    };
    cached.set_stream_table(Some(table));
    fresh.set_stream_table(Some(table));
    for sid in 0..STREAMS {
        for (i, d) in ste(&mut input, sid).into_iter().enumerate() {
            write(&mem, u64::from(sid) * 64 + 8 * i as u64, d);
        }
        for (i, d) in cd(&mut input, sid).into_iter().enumerate() {
            write(&mem, CDS + u64::from(sid) * 64 + 8 * i as u64, d);
        }
    }
    // Whether the tables changed since the caches were last emptied.
    let mut dirty = false;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.below(8) {
            0..=2 => {
                let addr = table_page(&mut input) + input.below(512) as u64 * 8;
                write(&mem, addr, descriptor(&mut input));
                dirty = true;
            }
            3 => {
                let sid = input.below(STREAMS as usize) as u32;
                if input.bool() {
                    for (i, d) in ste(&mut input, sid).into_iter().enumerate() {
                        write(&mem, u64::from(sid) * 64 + 8 * i as u64, d);
                    }
                } else {
                    for (i, d) in cd(&mut input, sid).into_iter().enumerate() {
                        write(&mem, CDS + u64::from(sid) * 64 + 8 * i as u64, d);
                    }
                }
                dirty = true;
            }
            4 => {
                let _ = cached.execute(&[command(&mut input)]);
            }
            5 => {
                cached.execute(&[CFGI_ALL, TLBI_NSNH_ALL]).unwrap();
                dirty = false;
            }
            _ => {
                let t = Transaction {
                    sid: input.below(STREAMS as usize + 1) as u32,
                    ssid: None,
                    address: match input.below(3) {
                        0 => input.u64(),
                        1 => u64::from(input.u32()) << 12 | u64::from(input.u16() & 0xfff),
                        _ => u64::from(input.u16()) << 12,
                    },
                    access: access(&mut input),
                };
                let got = cached.translate(&t);
                if let Ok(tr) = &got {
                    assert!(tr.contains(t.address), "{tr:x?} does not cover {t:x?}");
                    assert!(tr.permits(t.access), "{tr:x?} does not permit {t:x?}");
                }
                if !dirty {
                    fresh.execute(&[CFGI_ALL, TLBI_NSNH_ALL]).unwrap();
                    let want = fresh.translate(&t);
                    match (&got, &want) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b, "cached and fresh differ for {t:x?}"),
                        (Err(a), Err(b)) => assert_eq!(
                            a.event_id(),
                            b.event_id(),
                            "cached and fresh fault differently for {t:x?}"
                        ),
                        _ => panic!("cached {got:x?} but fresh {want:x?} for {t:x?}"),
                    }
                }
            }
        }
        while cached.pop_event().is_some() {}
        while fresh.pop_event().is_some() {}
    }
});
