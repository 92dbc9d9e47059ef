//! Time from the TSC. `rdtsc` is cheap even when every other instruction is emulated, so
//! waiting means comparing TSC values; only the frequency has to be found once:
//!
//! 1. CPUID 0x40000010 (hypervisor timing leaf): TSC kHz in eax.
//! 2. kvmclock: KVM's pvclock scale factors give the TSC rate it measured.
//! 3. CPUID 0x15 (TSC/crystal ratio and crystal Hz), then 0x16 (base MHz).
//! 4. Otherwise assume 2 GHz: x86_64 TSCs tick at 1-4 GHz, so waits stay within a factor
//!    of 2 of what was asked, unlike a calibrated loop whose speed varies by three orders of
//!    magnitude between hardware and emulation.
//!
//! Long waits sleep in `hlt` until the local APIC's TSC-deadline timer fires, so a waiting
//! guest costs the host nothing; without that timer they spin on `rdtsc`.

use crate::apic::LocalApic;
use crate::io::wrmsr;
use core::arch::asm;
use core::arch::x86_64::{__cpuid_count, _rdtsc, CpuidResult};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const ASSUMED_HZ: u64 = 2_000_000_000;
/// Frequencies outside this range are treated as bogus.
const PLAUSIBLE_HZ: core::ops::RangeInclusive<u64> = 10_000_000..=100_000_000_000;

/// Where the TSC frequency came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Source {
    HypervisorLeaf = 1,
    KvmClock = 2,
    CpuidCrystal = 3,
    CpuidBase = 4,
    Assumed = 5,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::HypervisorLeaf => "cpuid 0x40000010",
            Source::KvmClock => "kvmclock",
            Source::CpuidCrystal => "cpuid 0x15",
            Source::CpuidBase => "cpuid 0x16",
            Source::Assumed => "assumed",
        }
    }

    fn from_u8(v: u8) -> Source {
        match v {
            1 => Source::HypervisorLeaf,
            2 => Source::KvmClock,
            3 => Source::CpuidCrystal,
            4 => Source::CpuidBase,
            _ => Source::Assumed,
        }
    }
}

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_SOURCE: AtomicU8 = AtomicU8::new(0);

pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { _rdtsc() }
}

#[allow(unused_unsafe)]
fn cpuid(leaf: u32) -> CpuidResult {
    // SAFETY: CPUID exists on every x86_64 CPU.
    unsafe { __cpuid_count(leaf, 0) }
}

fn from_hypervisor_leaf() -> Option<u64> {
    if cpuid(0x4000_0000).eax < 0x4000_0010 {
        return None;
    }
    Some(cpuid(0x4000_0010).eax as u64 * 1000)
}

/// pvclock_vcpu_time_info, filled in by KVM.
#[repr(C, align(64))]
struct PvClock {
    version: u32,
    pad0: u32,
    tsc_timestamp: u64,
    system_time: u64,
    tsc_to_system_mul: u32,
    tsc_shift: i8,
    flags: u8,
    pad: [u8; 2],
}

static mut PVCLOCK: PvClock = PvClock {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
};

fn from_kvmclock() -> Option<u64> {
    const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d]; // "KVMKVMKVM\0\0\0"
    const CLOCKSOURCE2: u32 = 1 << 3;
    const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
    let base = cpuid(0x4000_0000);
    if [base.ebx, base.ecx, base.edx] != KVM_SIGNATURE || base.eax < 0x4000_0001 {
        return None;
    }
    if cpuid(0x4000_0001).eax & CLOCKSOURCE2 == 0 {
        return None;
    }
    let clock = &raw mut PVCLOCK;
    // KVM writes the structure before the vCPU runs again after the MSR write.
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, clock as u64 | 1);
    // SAFETY: the static is only written by KVM (and read here); reads are volatile.
    let (mul, shift) = unsafe {
        let mul = core::ptr::read_volatile(&raw const (*clock).tsc_to_system_mul);
        let shift = core::ptr::read_volatile(&raw const (*clock).tsc_shift);
        (mul, shift)
    };
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
    if mul == 0 {
        return None;
    }
    // ns = ((ticks << shift) * mul) >> 32, so Hz = 1e9 * 2^32 / (mul * 2^shift).
    let numerator = 1_000_000_000u128 << 32;
    let hz = if shift >= 0 {
        numerator / ((mul as u128) << shift)
    } else {
        (numerator << (-shift) as u32) / mul as u128
    };
    Some(hz as u64)
}

fn from_cpuid_crystal() -> Option<u64> {
    if cpuid(0).eax < 0x15 {
        return None;
    }
    let leaf = cpuid(0x15);
    if leaf.eax == 0 || leaf.ebx == 0 || leaf.ecx == 0 {
        return None;
    }
    Some(leaf.ecx as u64 * leaf.ebx as u64 / leaf.eax as u64)
}

fn from_cpuid_base() -> Option<u64> {
    if cpuid(0).eax < 0x16 {
        return None;
    }
    Some((cpuid(0x16).eax & 0xffff) as u64 * 1_000_000)
}

fn hypervisor_present() -> bool {
    cpuid(1).ecx & (1 << 31) != 0
}

/// A frequency source: whether it may be asked, how to ask it, and its name.
type Finder = (bool, fn() -> Option<u64>, Source);

fn detect() -> (u64, Source) {
    let hypervisor = hypervisor_present();
    let sources: [Finder; 4] = [
        (hypervisor, from_hypervisor_leaf, Source::HypervisorLeaf),
        (hypervisor, from_kvmclock, Source::KvmClock),
        (true, from_cpuid_crystal, Source::CpuidCrystal),
        (true, from_cpuid_base, Source::CpuidBase),
    ];
    for (usable, find, source) in sources {
        if let Some(hz) = usable.then(find).flatten() {
            if PLAUSIBLE_HZ.contains(&hz) {
                return (hz, source);
            }
        }
    }
    (ASSUMED_HZ, Source::Assumed)
}

/// The TSC frequency in Hz and where it came from (found once, then cached).
pub fn tsc_frequency() -> (u64, Source) {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    if hz != 0 {
        return (hz, Source::from_u8(TSC_SOURCE.load(Ordering::Relaxed)));
    }
    let (hz, source) = detect();
    TSC_SOURCE.store(source as u8, Ordering::Relaxed);
    TSC_HZ.store(hz, Ordering::Relaxed);
    (hz, source)
}

/// A point in TSC time.
#[derive(Clone, Copy)]
pub struct Deadline {
    tsc: u64,
}

impl Deadline {
    pub fn after_ms(ms: u64) -> Deadline {
        let (hz, _) = tsc_frequency();
        let ticks = (ms as u128 * hz as u128 / 1000).min(u64::MAX as u128) as u64;
        Deadline {
            tsc: rdtsc().saturating_add(ticks),
        }
    }

    pub fn passed(&self) -> bool {
        rdtsc() >= self.tsc
    }

    /// Returns once the deadline has passed.
    pub fn wait(&self) {
        if tsc_deadline_timer() {
            if let Ok(apic) = LocalApic::current() {
                self.sleep(&apic);
                return;
            }
        }
        while !self.passed() {
            core::hint::spin_loop();
        }
    }

    fn sleep(&self, apic: &LocalApic) {
        const IA32_TSC_DEADLINE: u32 = 0x6e0;
        apic.enable();
        apic.timer_tsc_deadline_mode();
        while !self.passed() {
            wrmsr(IA32_TSC_DEADLINE, self.tsc);
            // SAFETY: the IDT handles the timer vector; sti's one-instruction shadow means
            // the interrupt cannot slip in before hlt. Interrupts are off again afterwards.
            unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
        }
        wrmsr(IA32_TSC_DEADLINE, 0);
        apic.mask_timer();
    }
}

/// CPUID.1:ECX.TSC_DEADLINE.
fn tsc_deadline_timer() -> bool {
    cpuid(1).ecx & (1 << 24) != 0
}

/// Milliseconds between two TSC readings.
pub fn elapsed_ms(start: u64, end: u64) -> u64 {
    let (hz, _) = tsc_frequency();
    (end.saturating_sub(start) as u128 * 1000 / hz as u128) as u64
}
