//! Local APIC LINT pins: LINT0 takes the PIC's ExtINT, LINT1 takes NMI, as firmware leaves them.

use kvm_ioctls::VcpuFd;

use super::{kvm_err, CpuError};

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn set_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

fn read_reg(regs: &[std::os::raw::c_char], offset: usize) -> u32 {
    let bytes: [u8; 4] = std::array::from_fn(|i| regs[offset + i] as u8);
    u32::from_le_bytes(bytes)
}

fn write_reg(regs: &mut [std::os::raw::c_char], offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().into_iter().enumerate() {
        regs[offset + i] = b as std::os::raw::c_char;
    }
}

pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let mut state = vcpu.get_lapic().map_err(kvm_err("get_lapic"))?;
    let lvt0 = read_reg(&state.regs, APIC_LVT0);
    write_reg(
        &mut state.regs,
        APIC_LVT0,
        set_delivery_mode(lvt0, APIC_MODE_EXTINT),
    );
    let lvt1 = read_reg(&state.regs, APIC_LVT1);
    write_reg(
        &mut state.regs,
        APIC_LVT1,
        set_delivery_mode(lvt1, APIC_MODE_NMI),
    );
    vcpu.set_lapic(&state).map_err(kvm_err("set_lapic"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_replaces_bits_8_to_10_only() {
        assert_eq!(set_delivery_mode(0x0001_07ff, APIC_MODE_NMI), 0x0001_04ff);
        let mut regs = [0 as std::os::raw::c_char; 0x400];
        write_reg(&mut regs, APIC_LVT1, 0xdead_beef);
        assert_eq!(read_reg(&regs, APIC_LVT1), 0xdead_beef);
    }
}
