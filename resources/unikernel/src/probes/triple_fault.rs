//! `triple-fault`: crashes the guest on purpose, to check what nestor reports about a guest
//! that dies without a word. It loads an empty IDT and executes `ud2`: #UD has no gate, so
//! the CPU raises #GP, which has none either, then #DF, which has none: the CPU shuts
//! down. A fault rather than `int3`: KVM may have to emulate the delivery of a software
//! interrupt, and its emulator gives up on an empty IDT (an internal error, not a shutdown).
//! Never returns, so `probe=all` leaves it out.

use super::{Context, Outcome, Probe};
use crate::kprintln;
use core::arch::asm;

pub const PROBE: Probe = Probe {
    name: "triple-fault",
    run,
};

#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}

fn run(_ctx: &Context, _arg: Option<&str>) -> Outcome {
    kprintln!("triple-fault: empty IDT, then ud2");
    let empty = IdtPointer { limit: 0, base: 0 };
    // SAFETY: none; this is the crash the probe is for. Nothing runs after it.
    unsafe {
        asm!("lidt [{}]", "ud2", in(reg) &empty, options(readonly, nostack));
    }
    unreachable!("the guest survived a triple fault")
}
