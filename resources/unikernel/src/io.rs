//! Port I/O and uncached MMIO access.

use core::arch::asm;

pub fn outb(port: u16, value: u8) {
    // SAFETY: port writes have no memory effects visible to Rust.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as above.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

pub fn outl(port: u16, value: u32) {
    // SAFETY: as above.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as above.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a 32-bit register at a guest-physical address (identity mapped).
///
/// # Safety
/// `paddr` must be mapped and safe to read.
pub unsafe fn mmio_read32(paddr: u64) -> u32 {
    core::ptr::read_volatile(paddr as *const u32)
}

/// Writes a 32-bit register at a guest-physical address (identity mapped).
///
/// # Safety
/// `paddr` must be a mapped register or memory the caller owns.
pub unsafe fn mmio_write32(paddr: u64, value: u32) {
    core::ptr::write_volatile(paddr as *mut u32, value)
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only used for MSRs that exist on every x86_64 or after a CPUID check.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (hi as u64) << 32 | lo as u64
}

pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: as for rdmsr; callers own the state they change.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Stops this CPU for good: interrupts off, halt forever.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: halting has no memory effects.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
