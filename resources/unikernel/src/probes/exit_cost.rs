//! `exit-cost[:N]`: what one exit to the VMM costs, by kind: N one-byte port writes to the
//! boot-timer port (0x440) and N 4-byte MMIO writes to an address in the PCI hole that no BAR
//! claims, each timed with the TSC. Both change nothing the guest can see. Prints the median
//! and minimum of each in ns; the gap is what KVM spends decoding an MMIO instruction that a
//! port exit describes in the exit itself.

use super::{Context, Outcome, Probe};
use crate::clock::{rdtsc, tsc_frequency};
use crate::io::{mmio_write32, outb};
use crate::kprintln;
use unikernel::cmdline::parse_number;
use unikernel::format_line;
use unikernel::stats::{summarize, ticks_to_ns};

pub const PROBE: Probe = Probe {
    name: "exit-cost",
    run,
};

const DEFAULT_ROUNDS: usize = 200;
const MAX_ROUNDS: usize = 2000;
const BOOT_TIMER_PORT: u16 = 0x440;
const LOOP_MARK: u8 = 0xee;
/// The last page of the 32-bit PCI window: BARs are allocated from its bottom.
const UNCLAIMED_MMIO: u64 = 0xdfff_f000;

fn run(_ctx: &Context, arg: Option<&str>) -> Outcome {
    let rounds = match arg {
        None => DEFAULT_ROUNDS,
        Some(text) => match parse_number(text) {
            Some(n) if (1..=MAX_ROUNDS as u64).contains(&n) => n as usize,
            _ => return Err(format_line!("bad count '", text, "' (want exit-cost:N)")),
        },
    };
    let (hz, _) = tsc_frequency();
    let mut samples = [0u64; MAX_ROUNDS];
    for kind in ["pio", "mmio"] {
        for sample in samples[..rounds].iter_mut() {
            let start = rdtsc();
            if kind == "pio" {
                outb(BOOT_TIMER_PORT, LOOP_MARK);
            } else {
                // SAFETY: an address in the MMIO hole that no device claims; the VMM ignores it.
                unsafe { mmio_write32(UNCLAIMED_MMIO, 0) };
            }
            *sample = rdtsc().saturating_sub(start);
        }
        let s = summarize(&mut samples[..rounds]).ok_or_else(|| format_line!("no samples"))?;
        kprintln!(
            "exit-cost: kind=",
            kind,
            " rounds=",
            rounds,
            " median_ns=",
            ticks_to_ns(s.median, hz),
            " min_ns=",
            ticks_to_ns(s.min, hz)
        );
    }
    Ok(())
}
