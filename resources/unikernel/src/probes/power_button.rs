//! `power-button[:MS]`: waits up to MS milliseconds (default 60000) for a press of the ACPI
//! power button (`PUT /vm/shutdown` on nestor's API socket), then does what an operating
//! system does with one: powers off through ACPI S5.
//!
//! The event register is the one the DSDT's Generic Event Device declares; the probe polls
//! it rather than taking the GED's interrupt (a whole read takes the pending events, as
//! the DSDT's `_EVT` does). It prints `power-button: waiting` once it polls, so a test
//! knows when to press. Ends the guest on success, so `probe=all` leaves it out.

use super::{Context, Outcome, Probe};
use crate::acpi::Acpi;
use crate::clock::{elapsed_ms, rdtsc, Deadline};
use crate::io::mmio_read32;
use crate::kprintln;
use crate::power::enter_s5;
use unikernel::aml::ged_event_register;
use unikernel::cmdline::parse_number;
use unikernel::format_line;
use unikernel::text::hex;

pub const PROBE: Probe = Probe {
    name: "power-button",
    run,
};

const DEFAULT_WAIT_MS: u64 = 60_000;
const MAX_WAIT_MS: u64 = 3_600_000;
/// The event register's power-button bit.
const POWER_BUTTON: u32 = 1;
const POLL_INTERVAL_MS: u64 = 2;
/// How long S5 may take to end the VM before the probe calls it a failure.
const POWER_OFF_GRACE_MS: u64 = 2000;

fn run(ctx: &Context, arg: Option<&str>) -> Outcome {
    let wait_ms = match arg {
        None => DEFAULT_WAIT_MS,
        Some(text) => match parse_number(text) {
            Some(ms) if ms <= MAX_WAIT_MS => ms,
            _ => return Err(format_line!("bad wait '", text, "' (want power-button:MS)")),
        },
    };
    let acpi =
        Acpi::locate(ctx.start_info.rsdp_paddr()).ok_or_else(|| format_line!("no ACPI tables"))?;
    let aml = acpi.dsdt_aml().ok_or_else(|| format_line!("no DSDT"))?;
    let (register, length) =
        ged_event_register(aml).ok_or_else(|| format_line!("no ACPI0013 event register"))?;
    if length < 4 || register % 4 != 0 || register >= 1 << 32 {
        return Err(format_line!(
            "event register at 0x",
            hex(register, 8),
            " length ",
            length,
            " is not a mapped 32-bit register"
        ));
    }
    let sleep_port = acpi
        .sleep_control_port()
        .ok_or_else(|| format_line!("no sleep control register"))?;
    kprintln!(
        "power-button: waiting on the event register at 0x",
        hex(register, 8)
    );
    let start = rdtsc();
    let give_up = Deadline::after_ms(wait_ms);
    loop {
        // SAFETY: below 4 GiB, in the identity-mapped MMIO hole, 4-byte aligned (checked).
        let events = unsafe { mmio_read32(register) };
        if events & POWER_BUTTON != 0 {
            let after = elapsed_ms(start, rdtsc());
            kprintln!(
                "power-button: pressed after ",
                after,
                " ms (events 0x",
                hex(events.into(), 8),
                "); powering off through S5"
            );
            enter_s5(sleep_port);
            Deadline::after_ms(POWER_OFF_GRACE_MS).wait();
            return Err(format_line!("S5 did not power the VM off"));
        }
        if events != 0 {
            return Err(format_line!("unknown events 0x", hex(events.into(), 8)));
        }
        if give_up.passed() {
            return Err(format_line!(
                "no power-button press within ",
                wait_ms,
                " ms"
            ));
        }
        Deadline::after_ms(POLL_INTERVAL_MS).wait();
    }
}
