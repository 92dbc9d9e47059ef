//! A minimal IDT: every CPU exception prints what happened and ends the VM with status 3,
//! so a guest bug is a clean failure instead of a hang or a triple fault. Three interrupt
//! vectors follow: the local APIC timer (used to sleep in `hlt`), its spurious vector, and
//! one for device MSIs, which counts them.

use crate::power::{exit, EXIT_CRASH};
use crate::{kprint, kprintln};
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};
use unikernel::text::hex;

const EXCEPTIONS: usize = 32;
/// Local APIC timer: acknowledged and otherwise ignored; it only ends a `hlt`.
pub const TIMER_VECTOR: u8 = 32;
/// Local APIC spurious interrupts: ignored.
pub const SPURIOUS_VECTOR: u8 = 33;
/// Device MSIs: counted in [`DEVICE_INTERRUPTS`] and acknowledged.
pub const DEVICE_VECTOR: u8 = 34;
const VECTORS: usize = 35;
/// Bytes per stub in `exception_stubs` (each is aligned to this).
const STUB_SIZE: u64 = 16;

// One stub per vector. The CPU pushes an error code for some vectors; the others push a
// zero so `exception_common` always finds [vector, error, rip, cs, ...] on the stack.
global_asm!(
    r#"
    .macro exception_stub_no_error vector
    .balign 16
    pushq $0
    pushq $\vector
    jmp exception_common
    .endm

    .macro exception_stub_with_error vector
    .balign 16
    pushq $\vector
    jmp exception_common
    .endm

    .pushsection .text.exceptions, "ax"
    .balign 16
    .global exception_stubs
exception_stubs:
    exception_stub_no_error 0
    exception_stub_no_error 1
    exception_stub_no_error 2
    exception_stub_no_error 3
    exception_stub_no_error 4
    exception_stub_no_error 5
    exception_stub_no_error 6
    exception_stub_no_error 7
    exception_stub_with_error 8
    exception_stub_no_error 9
    exception_stub_with_error 10
    exception_stub_with_error 11
    exception_stub_with_error 12
    exception_stub_with_error 13
    exception_stub_with_error 14
    exception_stub_no_error 15
    exception_stub_no_error 16
    exception_stub_with_error 17
    exception_stub_no_error 18
    exception_stub_no_error 19
    exception_stub_no_error 20
    exception_stub_with_error 21
    exception_stub_no_error 22
    exception_stub_no_error 23
    exception_stub_no_error 24
    exception_stub_no_error 25
    exception_stub_no_error 26
    exception_stub_no_error 27
    exception_stub_no_error 28
    exception_stub_with_error 29
    exception_stub_with_error 30
    exception_stub_no_error 31

exception_common:
    movq (%rsp), %rdi
    movq 8(%rsp), %rsi
    movq 16(%rsp), %rdx
    andq $-16, %rsp
    call exception_report
    ud2

    .balign 16
    .global timer_interrupt
timer_interrupt:
    pushq %rax
    movl $0xfee000b0, %eax
    movl $0, (%rax)
    popq %rax
    iretq

    .balign 16
    .global device_interrupt
device_interrupt:
    lock incq DEVICE_INTERRUPTS(%rip)
    pushq %rax
    movl $0xfee000b0, %eax
    movl $0, (%rax)
    popq %rax
    iretq

    .balign 16
    .global spurious_interrupt
spurious_interrupt:
    iretq
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    static exception_stubs: u8;
    static timer_interrupt: u8;
    static spurious_interrupt: u8;
    static device_interrupt: u8;
}

/// Interrupts taken on [`DEVICE_VECTOR`] since boot (incremented by its handler).
#[no_mangle]
static DEVICE_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

pub fn device_interrupts() -> u64 {
    DEVICE_INTERRUPTS.load(Ordering::SeqCst)
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const EMPTY_GATE: Gate = Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
};

#[repr(C, align(16))]
struct Idt([Gate; VECTORS]);

static mut IDT: Idt = Idt([EMPTY_GATE; VECTORS]);

/// The long-mode code segment set up by the entry code.
const KERNEL_CS: u16 = 0x08;
/// Present, DPL 0, 64-bit interrupt gate.
const INTERRUPT_GATE: u8 = 0x8e;

#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}

fn handler(vector: usize) -> u64 {
    match vector {
        v if v < EXCEPTIONS => &raw const exception_stubs as u64 + v as u64 * STUB_SIZE,
        v if v == TIMER_VECTOR as usize => &raw const timer_interrupt as u64,
        v if v == DEVICE_VECTOR as usize => &raw const device_interrupt as u64,
        _ => &raw const spurious_interrupt as u64,
    }
}

/// Fills and loads the IDT. Vectors past the last entry are beyond the limit and raise #GP,
/// which is reported like any other exception.
pub fn install() {
    // SAFETY: runs once on the boot CPU before anything else reads the IDT.
    unsafe {
        let idt = &raw mut IDT;
        for (vector, gate) in (*idt).0.iter_mut().enumerate() {
            let handler = handler(vector);
            *gate = Gate {
                offset_low: handler as u16,
                selector: KERNEL_CS,
                ist: 0,
                type_attr: INTERRUPT_GATE,
                offset_mid: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                reserved: 0,
            };
        }
        let pointer = IdtPointer {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: idt as *const Idt as u64,
        };
        asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags));
    }
}

fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

#[no_mangle]
extern "C" fn exception_report(vector: u64, error: u64, rip: u64) -> ! {
    kprint!(
        "\nEXCEPTION vector ",
        vector,
        " error 0x",
        hex(error, 4),
        " rip 0x",
        hex(rip, 16)
    );
    if vector == 14 {
        kprint!(" cr2 0x", hex(read_cr2(), 16));
    }
    kprintln!();
    exit(EXIT_CRASH)
}
