//! `boot`: the guest arrived as nestor promised: the command line, a working serial port,
//! the memory size and every CPU. Needs `nestor.mem_mib=N nestor.cpus=N` on the cmdline.

use super::{Context, Outcome, Probe};
use crate::acpi::Acpi;
use crate::io::{inb, outb};
use crate::serial::{LSR_THR_EMPTY, SCRATCH};
use crate::smp::start_application_processors;
use unikernel::format_line;
use unikernel::memmap::guest_memory_bytes;

pub const PROBE: Probe = Probe { name: "boot", run };

const MIB: u64 = 1 << 20;
/// How long the APs get to check in (TSC time; each AP runs a few instructions).
const AP_TIMEOUT_MS: u64 = 2000;

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    check_cmdline(ctx)?;
    check_serial()?;
    check_memory(ctx)?;
    check_cpus(ctx)
}

fn check_cmdline(ctx: &Context) -> Outcome {
    if !ctx.cmdline.as_str().contains("probe=") {
        return Err(format_line!("cmdline lacks probe="));
    }
    Ok(())
}

fn check_serial() -> Outcome {
    for value in [0x5a, 0xa5] {
        outb(SCRATCH, value);
        let back = inb(SCRATCH);
        if back != value {
            return Err(format_line!("serial scratch wrote ", value, " read ", back));
        }
    }
    if inb(crate::serial::COM1 + 5) & LSR_THR_EMPTY == 0 {
        return Err(format_line!("serial LSR does not show THR empty"));
    }
    Ok(())
}

fn required(ctx: &Context, key: &'static str) -> Result<u64, unikernel::text::Line> {
    ctx.cmdline
        .number(key)
        .ok_or_else(|| format_line!(key, " missing from cmdline"))
}

fn check_memory(ctx: &Context) -> Outcome {
    let mib = required(ctx, "nestor.mem_mib")?;
    let seen = guest_memory_bytes(ctx.start_info.regions());
    if seen.abs_diff(mib * MIB) > MIB {
        return Err(format_line!(
            "memory map shows ",
            seen / 1024,
            " KiB, nestor.mem_mib=",
            mib
        ));
    }
    Ok(())
}

fn check_cpus(ctx: &Context) -> Outcome {
    let expected = required(ctx, "nestor.cpus")? as usize;
    let acpi =
        Acpi::locate(ctx.start_info.rsdp_paddr()).ok_or_else(|| format_line!("no ACPI tables"))?;
    let cpus = acpi.cpus().ok_or_else(|| format_line!("no MADT"))?;
    if cpus.total() != expected {
        return Err(format_line!(
            "MADT lists ",
            cpus.total(),
            " CPUs, nestor.cpus=",
            expected
        ));
    }
    let aps = start_application_processors(cpus.apic_ids(), AP_TIMEOUT_MS)
        .map_err(|why| format_line!(why))?;
    let up = aps + 1;
    if up != expected {
        return Err(format_line!("only ", up, " of ", expected, " CPUs up"));
    }
    Ok(())
}
