//! General, segment and FPU registers at the boot protocol's entry.

use kvm_bindings::{kvm_fpu, kvm_regs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::gdt::{boot_gdt, segment_from_entry, CODE32, CODE64};
use super::paging::write_identity_tables;
use super::{kvm_err, CpuError};
use crate::boot::{BootEntry, EntryMode};
use crate::layout::{BOOT_GDT_START, BOOT_IDT_START};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Bit 1 of RFLAGS is reserved and always set.
const RFLAGS_RESERVED: u64 = 0x2;
/// x87 control word and MXCSR defaults after FNINIT / reset.
const FPU_CONTROL_WORD: u16 = 0x37f;
const MXCSR_DEFAULT: u32 = 0x1f80;

/// Sets the boot vCPU's registers for `entry`. Application processors are left in their
/// reset state: the in-kernel local APIC holds them until the guest sends INIT/SIPI.
pub fn setup_boot_cpu(
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    entry: &BootEntry,
) -> Result<(), CpuError> {
    let code = match entry.mode {
        EntryMode::Linux64 { .. } => CODE64,
        EntryMode::Pvh { .. } => CODE32,
    };
    let gdt = boot_gdt(code);
    for (i, descriptor) in gdt.iter().enumerate() {
        mem.write_obj(*descriptor, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(|e| CpuError::Memory(e.to_string()))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|e| CpuError::Memory(e.to_string()))?;

    let mut sregs = vcpu.get_sregs().map_err(kvm_err("get_sregs"))?;
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    let code_seg = segment_from_entry(gdt[1], 1);
    let data_seg = segment_from_entry(gdt[2], 2);
    sregs.cs = code_seg;
    sregs.ds = data_seg;
    sregs.es = data_seg;
    sregs.fs = data_seg;
    sregs.gs = data_seg;
    sregs.ss = data_seg;
    sregs.tr = segment_from_entry(gdt[3], 3);

    let mut regs = kvm_regs {
        rip: entry.entry.0,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    match entry.mode {
        EntryMode::Linux64 { boot_params } => {
            sregs.cr3 = write_identity_tables(mem)?;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG | X86_CR0_ET;
            sregs.efer |= EFER_LME | EFER_LMA;
            regs.rsi = boot_params.0;
        }
        EntryMode::Pvh { start_info } => {
            sregs.cr0 = (sregs.cr0 & !X86_CR0_PG) | X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rbx = start_info.0;
        }
    }
    vcpu.set_sregs(&sregs).map_err(kvm_err("set_sregs"))?;
    vcpu.set_regs(&regs).map_err(kvm_err("set_regs"))?;
    let fpu = kvm_fpu {
        fcw: FPU_CONTROL_WORD,
        mxcsr: MXCSR_DEFAULT,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("set_fpu"))?;
    Ok(())
}
