//! Self-test scenarios selected with `probe=NAME[:ARG][,...]` or `probe=all`.
//!
//! Each scenario is one file in this folder exporting a `PROBE`; add it to [`PROBES`], or
//! to [`ON_REQUEST_ONLY`] when it cannot run among others (it ends the guest) or only
//! measures.
//! A scenario gets the boot context and its `:ARG` (if any), reads further settings from
//! the command line (`ctx.cmdline.number("blk_sector")`), and returns `Ok(())` or a
//! one-line reason built with `format_line!`. The runner prints exactly one
//! `PROBE NAME ok` / `PROBE NAME FAIL reason` line per scenario, then
//! `PROBE done passed=N failed=M`, and exits with 0 when nothing failed, 1 otherwise.

mod boot;
mod dma_engine;
mod edu;
mod exit_cost;
mod hold;
mod nested;
mod pci;
mod pio_loop;
mod power_button;
mod sva;
mod triple_fault;
mod viommu;
mod viommu_map_bench;
mod virtio_blk;
mod virtio_console;
mod virtio_rng;

use crate::kprintln;
use crate::power::{exit, EXIT_OK, EXIT_PROBE_FAILED};
use crate::start_info::StartInfo;
use unikernel::cmdline::Cmdline;
use unikernel::format_line;
use unikernel::text::Line;

/// What every scenario can look at.
pub struct Context {
    pub start_info: StartInfo,
    pub cmdline: Cmdline<'static>,
}

/// `Err` carries the failure reason printed after `FAIL`.
pub type Outcome = Result<(), Line>;

pub struct Probe {
    pub name: &'static str,
    pub run: fn(&Context, Option<&str>) -> Outcome,
}

/// Every scenario, in the order `probe=all` runs them.
const PROBES: &[Probe] = &[
    boot::PROBE,
    hold::PROBE,
    pio_loop::PROBE,
    viommu::PROBE,
    dma_engine::PROBE,
    nested::s1::PROBE,
    nested::invalidate::PROBE,
    nested::fault::PROBE,
    nested::hostile::PROBE,
    sva::page_request::PROBE,
    sva::page_deny::PROBE,
    sva::burst::PROBE,
    sva::no_answer::PROBE,
    pci::PROBE,
    virtio_blk::PROBE,
    virtio_rng::PROBE,
    virtio_console::PROBE,
    edu::PROBE,
];

/// Scenarios `probe=all` leaves out: they never return, or only measure.
const ON_REQUEST_ONLY: &[Probe] = &[
    triple_fault::PROBE,
    power_button::PROBE,
    viommu_map_bench::PROBE,
    exit_cost::PROBE,
];

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn report(&mut self, name: &str, outcome: Outcome) {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                kprintln!("PROBE ", name, " ok");
            }
            Err(reason) => {
                self.failed += 1;
                kprintln!("PROBE ", name, " FAIL ", reason);
            }
        }
    }

    fn run(&mut self, ctx: &Context, probe: &Probe, arg: Option<&str>) {
        let outcome = (probe.run)(ctx, arg);
        self.report(probe.name, outcome);
    }
}

/// Runs the requested scenarios in order and ends the VM with the verdict.
pub fn run_requested(ctx: &Context) -> ! {
    let mut tally = Tally::default();
    for request in ctx.cmdline.probes() {
        if request.name == "all" {
            for probe in PROBES {
                tally.run(ctx, probe, None);
            }
            continue;
        }
        match PROBES
            .iter()
            .chain(ON_REQUEST_ONLY)
            .find(|p| p.name == request.name)
        {
            Some(probe) => tally.run(ctx, probe, request.arg),
            None => tally.report(request.name, Err(format_line!("unknown scenario"))),
        }
    }
    kprintln!("PROBE done passed=", tally.passed, " failed=", tally.failed);
    exit(if tally.failed == 0 {
        EXIT_OK
    } else {
        EXIT_PROBE_FAILED
    })
}
