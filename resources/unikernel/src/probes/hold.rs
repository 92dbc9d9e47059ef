//! `hold:MS`: keep the guest running about MS milliseconds (TSC time), then pass. The
//! guest sleeps in `hlt` meanwhile when it has a TSC-deadline timer.

use super::{Context, Outcome, Probe};
use crate::clock::{elapsed_ms, rdtsc, Deadline};
use unikernel::cmdline::parse_number;
use unikernel::format_line;

pub const PROBE: Probe = Probe { name: "hold", run };

/// Used when no duration is given (as with `probe=all`).
const DEFAULT_MS: u64 = 100;
/// Longest hold accepted: one hour.
const MAX_MS: u64 = 3_600_000;

fn run(_ctx: &Context, arg: Option<&str>) -> Outcome {
    let ms = match arg {
        None => DEFAULT_MS,
        Some(text) => match parse_number(text) {
            Some(ms) if ms <= MAX_MS => ms,
            _ => return Err(format_line!("bad duration '", text, "' (want hold:MS)")),
        },
    };
    let start = rdtsc();
    Deadline::after_ms(ms).wait();
    let held = elapsed_ms(start, rdtsc());
    if held < ms {
        return Err(format_line!("held ", held, " ms of ", ms));
    }
    Ok(())
}
