//! `pci`: bus 0 looks the same through ECAM (found from the MCFG) and through the 0xcf8/0xcfc
//! ports; every memory BAR sizes to a power of two and keeps its address after sizing; every
//! MSI-X capability can be enabled and its table starts masked and holds what is written.

use core::ptr::{read_volatile, write_volatile};

use super::{Context, Outcome, Probe};
use crate::acpi::Acpi;
use crate::ecam::Ecam;
use crate::pci::Bdf;
use unikernel::format_line;
use unikernel::text::{hex, Line};

pub const PROBE: Probe = Probe { name: "pci", run };

const CAP_MSIX: u8 = 0x11;
const MSIX_ENABLE: u32 = 1 << 31;
const MSIX_FUNCTION_MASK: u32 = 1 << 30;

fn at(bdf: Bdf) -> Line {
    format_line!(hex(bdf.device as u64, 2), ".", bdf.function)
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let acpi =
        Acpi::locate(ctx.start_info.rsdp_paddr()).ok_or_else(|| format_line!("no ACPI tables"))?;
    let ecam = Ecam::from_mcfg(&acpi).ok_or_else(|| format_line!("no usable MCFG"))?;
    if ecam.last_bus != 0 {
        return Err(format_line!("MCFG covers buses up to ", ecam.last_bus));
    }
    let mut functions = 0u32;
    let mut bars = 0u32;
    let mut msix = 0u32;
    for device in 0..32 {
        let bdf = Bdf::new(0, device, 0);
        let through_ports = [bdf.read32(0x00), bdf.read32(0x08), bdf.read32(0x0c)];
        let through_ecam = [
            ecam.read32(bdf, 0x00),
            ecam.read32(bdf, 0x08),
            ecam.read32(bdf, 0x0c),
        ];
        if through_ports != through_ecam {
            return Err(format_line!(
                at(bdf),
                ": ports read ",
                hex(through_ports[0] as u64, 8),
                ", ECAM ",
                hex(through_ecam[0] as u64, 8)
            ));
        }
        if through_ports[0] as u16 == 0xffff {
            continue;
        }
        functions += 1;
        if (through_ports[2] >> 16) & 0x7f != 0 {
            continue;
        }
        bars += size_bars(bdf)?;
        if check_msix(&ecam, bdf)? {
            msix += 1;
        }
    }
    if ecam.read32(Bdf::new(0, 0, 0), 0) != bdf_id(0x8086, 0x0d57) {
        return Err(format_line!("no host bridge at 00:00.0"));
    }
    crate::kprintln!(
        "pci: ",
        functions,
        " functions, ",
        bars,
        " BARs, ",
        msix,
        " MSI-X"
    );
    Ok(())
}

fn bdf_id(vendor: u16, device: u16) -> u32 {
    u32::from(device) << 16 | u32::from(vendor)
}

/// Sizes every memory BAR of `bdf` through the ports; returns how many it found.
fn size_bars(bdf: Bdf) -> Result<u32, Line> {
    let mut found = 0;
    let mut bar = 0u8;
    while bar < 6 {
        let offset = 0x10 + bar * 4;
        let original = bdf.read32(offset);
        let is_64 = original & 0x7 == 0x4;
        if original & 1 != 0 {
            bar += 1;
            continue;
        }
        bdf.write32(offset, u32::MAX);
        let low_mask = bdf.read32(offset);
        bdf.write32(offset, original);
        let mut mask = u64::from(low_mask & !0xf);
        if is_64 {
            let high = bdf.read32(offset + 4);
            bdf.write32(offset + 4, u32::MAX);
            mask |= u64::from(bdf.read32(offset + 4)) << 32;
            bdf.write32(offset + 4, high);
        } else if mask != 0 {
            mask |= 0xffff_ffff_0000_0000;
        }
        if bdf.read32(offset) != original {
            return Err(format_line!(at(bdf), " BAR", bar, " changed after sizing"));
        }
        if mask != 0 {
            let size = (!mask).wrapping_add(1);
            if !size.is_power_of_two() || original & !0xf & (size as u32).wrapping_sub(1) != 0 {
                return Err(format_line!(at(bdf), " BAR", bar, " mask ", hex(mask, 16)));
            }
            found += 1;
        }
        bar += if is_64 { 2 } else { 1 };
    }
    Ok(found)
}

/// Enables MSI-X on `bdf` if it has it, checks the table, and turns it off again.
fn check_msix(ecam: &Ecam, bdf: Bdf) -> Result<bool, Line> {
    let mut cap = (ecam.read32(bdf, 0x34) & 0xfc) as u16;
    let mut hops = 0;
    while cap != 0 && hops < 48 {
        let header = ecam.read32(bdf, cap);
        if header as u8 == CAP_MSIX {
            break;
        }
        cap = ((header >> 8) & 0xfc) as u16;
        hops += 1;
    }
    if cap == 0 || hops == 48 {
        return Ok(false);
    }
    let header = ecam.read32(bdf, cap);
    let table = ecam.read32(bdf, cap + 4);
    let bir = (table & 7) as u8;
    let bar_low = bdf.read32(0x10 + bir * 4);
    let mut base = u64::from(bar_low & !0xf);
    if bar_low & 0x6 == 0x4 {
        base |= u64::from(bdf.read32(0x14 + bir * 4)) << 32;
    }
    let entry = base + u64::from(table & !7);
    // Memory decoding on.
    let command = bdf.read32(0x04);
    bdf.write32(0x04, command | 0x2);
    ecam.write32(bdf, cap, header | MSIX_ENABLE | MSIX_FUNCTION_MASK);
    let enabled = ecam.read32(bdf, cap);
    if enabled & (MSIX_ENABLE | MSIX_FUNCTION_MASK) != MSIX_ENABLE | MSIX_FUNCTION_MASK {
        return Err(format_line!(
            at(bdf),
            " MSI-X control reads ",
            hex(enabled as u64, 8)
        ));
    }
    // SAFETY: the MSI-X table the capability points at, inside the function's BAR.
    let (control, data) = unsafe {
        let control = read_volatile((entry + 12) as *const u32);
        write_volatile((entry + 8) as *mut u32, 0x4321);
        (control, read_volatile((entry + 8) as *const u32))
    };
    ecam.write32(bdf, cap, header & !(MSIX_ENABLE | MSIX_FUNCTION_MASK));
    if control & 1 == 0 {
        return Err(format_line!(at(bdf), " MSI-X vector 0 starts unmasked"));
    }
    if data != 0x4321 {
        return Err(format_line!(
            at(bdf),
            " MSI-X entry data reads ",
            hex(data as u64, 8)
        ));
    }
    Ok(true)
}
