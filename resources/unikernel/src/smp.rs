//! Application processor bring-up: INIT-SIPI-SIPI into a real-mode trampoline at 0x8000
//! that only counts itself in with a locked increment and halts. Kept to a handful of
//! instructions because real-mode code is emulated one instruction at a time.

use crate::apic::LocalApic;
use crate::clock::Deadline;
use core::arch::global_asm;
use core::sync::atomic::{compiler_fence, AtomicU32, Ordering};

/// Where the trampoline is copied; the guest contract keeps 0x8000-0x8fff free for it.
pub const TRAMPOLINE_PADDR: u64 = 0x8000;
/// STARTUP IPI vector: the page number of the trampoline.
const SIPI_VECTOR: u8 = (TRAMPOLINE_PADDR >> 12) as u8;
/// Backstop on the wait loop in case the TSC does not advance.
const MAX_WAIT_POLLS: u32 = 200_000;

// Entered in real mode with cs = 0x0800, ip = 0. The counter sits inside the copied page,
// addressed relative to cs.
global_asm!(
    r#"
    .pushsection .rodata.ap_trampoline, "a"
    .code16
    .global ap_trampoline_start
ap_trampoline_start:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lock incl (ap_trampoline_counter - ap_trampoline_start)
1:
    hlt
    jmp 1b
    .balign 4
    .global ap_trampoline_counter
ap_trampoline_counter:
    .long 0
    .global ap_trampoline_end
ap_trampoline_end:
    .code64
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_counter: u8;
    static ap_trampoline_end: u8;
}

/// Copies the trampoline to its page and returns the counter the APs increment there.
fn install_trampoline() -> &'static AtomicU32 {
    let start = &raw const ap_trampoline_start;
    let len = &raw const ap_trampoline_end as usize - start as usize;
    let counter_offset = &raw const ap_trampoline_counter as usize - start as usize;
    // SAFETY: the page at TRAMPOLINE_PADDR is free RAM reserved for this by the guest
    // contract and identity mapped; no AP is running code there yet (or they are halted
    // and about to be re-initialised).
    unsafe {
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE_PADDR as *mut u8, len);
        let counter = &*((TRAMPOLINE_PADDR as usize + counter_offset) as *const AtomicU32);
        counter.store(0, Ordering::SeqCst);
        compiler_fence(Ordering::SeqCst);
        counter
    }
}

/// Starts every CPU in `apic_ids` other than this one and waits up to `timeout_ms` for
/// them to check in. Returns how many did.
pub fn start_application_processors(
    apic_ids: &[u32],
    timeout_ms: u64,
) -> Result<usize, &'static str> {
    let apic = LocalApic::current()?;
    apic.enable();
    let bsp = apic.id();
    let counter = install_trampoline();
    let mut expected = 0u32;
    for &id in apic_ids.iter().filter(|&&id| id != bsp) {
        expected += 1;
        if id > 0xfe {
            continue; // not addressable in xAPIC mode; it will be missing from the count
        }
        // The second STARTUP is ignored by a CPU the first one already started.
        let _ = apic.send_init(id)
            && apic.send_startup(id, SIPI_VECTOR)
            && apic.send_startup(id, SIPI_VECTOR);
    }
    let deadline = Deadline::after_ms(timeout_ms);
    for _ in 0..MAX_WAIT_POLLS {
        if counter.load(Ordering::SeqCst) >= expected || deadline.passed() {
            break;
        }
        core::hint::spin_loop();
    }
    Ok(counter.load(Ordering::SeqCst) as usize)
}
