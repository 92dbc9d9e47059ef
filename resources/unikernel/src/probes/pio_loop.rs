//! `pio-loop:N`: N byte writes to the boot-timer port (0x440), each one exit to the VMM
//! that changes nothing the guest can see. Times exit round trips from the host side.

use super::{Context, Outcome, Probe};
use crate::io::outb;
use unikernel::cmdline::parse_number;
use unikernel::format_line;

pub const PROBE: Probe = Probe {
    name: "pio-loop",
    run,
};

const BOOT_TIMER_PORT: u16 = 0x440;
/// Used when no count is given (as with `probe=all`).
const DEFAULT_WRITES: u64 = 100;
/// Most writes accepted: at several microseconds an exit, about a minute of exits.
const MAX_WRITES: u64 = 10_000_000;
/// A mark code the guest does not use for boot milestones.
const LOOP_MARK: u8 = 0xee;

fn run(_ctx: &Context, arg: Option<&str>) -> Outcome {
    let writes = match arg {
        None => DEFAULT_WRITES,
        Some(text) => match parse_number(text) {
            Some(n) if n <= MAX_WRITES => n,
            _ => return Err(format_line!("bad count '", text, "' (want pio-loop:N)")),
        },
    };
    for _ in 0..writes {
        outb(BOOT_TIMER_PORT, LOOP_MARK);
    }
    Ok(())
}
