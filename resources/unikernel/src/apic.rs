//! The local APIC in xAPIC (MMIO) mode: INIT and STARTUP IPIs, and the TSC-deadline timer.

use crate::idt::{SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::io::{mmio_read32, mmio_write32, rdmsr};

const IA32_APIC_BASE: u32 = 0x1b;
const BASE_ENABLED: u64 = 1 << 11;
const BASE_X2APIC: u64 = 1 << 10;

const REG_ID: u64 = 0x20;
const REG_SPURIOUS: u64 = 0xf0;
/// Interrupt Request Register: eight 32-bit registers, 16 bytes apart.
const REG_IRR: u64 = 0x200;
const REG_LVT_TIMER: u64 = 0x320;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;

const SPURIOUS_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
/// Polls of the ICR delivery status before giving up on an IPI.
const MAX_ICR_POLLS: u32 = 1000;

pub struct LocalApic {
    base: u64,
}

impl LocalApic {
    /// This CPU's local APIC, if it is enabled and in xAPIC mode.
    pub fn current() -> Result<LocalApic, &'static str> {
        let msr = rdmsr(IA32_APIC_BASE);
        if msr & BASE_ENABLED == 0 {
            return Err("local APIC disabled");
        }
        if msr & BASE_X2APIC != 0 {
            return Err("local APIC in x2APIC mode");
        }
        Ok(LocalApic {
            base: msr & 0xf_ffff_f000,
        })
    }

    fn read(&self, reg: u64) -> u32 {
        // SAFETY: the APIC page is mapped uncached by the boot page tables.
        unsafe { mmio_read32(self.base + reg) }
    }

    fn write(&self, reg: u64, value: u32) {
        // SAFETY: as for read.
        unsafe { mmio_write32(self.base + reg, value) }
    }

    pub fn id(&self) -> u32 {
        self.read(REG_ID) >> 24
    }

    /// Sets the software-enable bit, with spurious interrupts on a vector the IDT ignores.
    pub fn enable(&self) {
        let svr = self.read(REG_SPURIOUS);
        if svr & SPURIOUS_ENABLE == 0 {
            self.write(
                REG_SPURIOUS,
                (svr & !0xff) | SPURIOUS_ENABLE | SPURIOUS_VECTOR as u32,
            );
        }
    }

    /// Whether `vector` waits in the IRR: accepted, not yet delivered (interrupts off).
    pub fn requested(&self, vector: u8) -> bool {
        let reg = REG_IRR + u64::from(vector / 32) * 0x10;
        self.read(reg) & 1 << (vector % 32) != 0
    }

    /// Timer in TSC-deadline mode: it fires TIMER_VECTOR once the TSC reaches the value
    /// written to IA32_TSC_DEADLINE.
    pub fn timer_tsc_deadline_mode(&self) {
        self.write(REG_LVT_TIMER, LVT_TIMER_TSC_DEADLINE | TIMER_VECTOR as u32);
    }

    pub fn mask_timer(&self) {
        self.write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    }

    fn send_ipi(&self, apic_id: u32, command: u32) -> bool {
        self.write(REG_ICR_HIGH, apic_id << 24);
        self.write(REG_ICR_LOW, command);
        (0..MAX_ICR_POLLS).any(|_| self.read(REG_ICR_LOW) & ICR_DELIVERY_PENDING == 0)
    }

    /// INIT: the target resets and waits for a STARTUP IPI.
    pub fn send_init(&self, apic_id: u32) -> bool {
        self.send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT)
    }

    /// STARTUP: the target starts in real mode at `vector << 12`.
    pub fn send_startup(&self, apic_id: u32, vector: u8) -> bool {
        self.send_ipi(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | vector as u32)
    }
}
