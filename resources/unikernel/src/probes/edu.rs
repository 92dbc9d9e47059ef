//! `edu`: QEMU's edu device passed through with `--vfio`, driven as a driver would: its
//! identification register, MSI to this CPU's local APIC, and DMA from a RAM buffer to the
//! device's buffer and back to another RAM buffer, each transfer ending in an interrupt.
//!
//! Without a virtio-iommu (nestor maps all guest RAM at IOVA = GPA) the device is given
//! guest-physical addresses. Behind the virtio-iommu (`--vfio path=...,iommu=on`) edu is
//! attached to a domain and the buffers are mapped at IOVAs unlike their addresses; after
//! the round trip the destination is unmapped and a transfer to its stale IOVA must not
//! reach guest memory, then mapped again and reached.

use core::arch::asm;

use super::{Context, Outcome, Probe};
use crate::apic::LocalApic;
use crate::clock::Deadline;
use crate::edu::{self, Direction, Edu, DMA_DONE, DMA_MASK, IDENTIFICATION};
use crate::idt::{device_interrupts, DEVICE_VECTOR};
use crate::kprintln;
use crate::pci::Bdf;
use crate::virtio_iommu::{self, VirtioIommu, MAP_F_READ, MAP_F_WRITE};
use crate::virtio_pci::Page;
use unikernel::format_line;
use unikernel::memmap::RAM;
use unikernel::text::{hex, Line};

pub const PROBE: Probe = Probe { name: "edu", run };

/// Where the buffers appear to edu behind the virtio-iommu: below edu's 28-bit DMA
/// mask and far from where the image puts them in guest-physical memory.
const IOVA_SOURCE: u64 = 0x0a00_0000;
const IOVA_DESTINATION: u64 = 0x0a00_1000;
/// Bytes per transfer: half the device buffer (a transfer may not reach its end), so
/// the destination's second half shows the copy stopped where it should.
const LENGTH: u32 = edu::BUFFER_SIZE / 2;
const WORDS: usize = LENGTH as usize / 8;
/// TSC milliseconds for a transfer (edu starts it 100 ms after the command) ...
const DMA_MS: u64 = 3000;
/// ... and for its interrupt to arrive after the device shows it finished.
const INTERRUPT_MS: u64 = 1000;
/// How long a transfer that must not land is given to land anyway, after edu says done.
const SETTLE_MS: u64 = 200;
const SENTINEL: u64 = 0x5e47_1e15_dead_beef;

static mut SOURCE: Page = Page::ZERO;
static mut DESTINATION: Page = Page::ZERO;

fn words(page: *mut Page) -> &'static mut [u64; 512] {
    // SAFETY: the pages are this probe's statics, page aligned; only this probe and the
    // device (while a transfer runs, which the probe waits out) touch them.
    unsafe { &mut *(page as *mut [u64; 512]) }
}

fn source() -> &'static mut [u64; 512] {
    words(core::ptr::addr_of_mut!(SOURCE))
}

fn destination() -> &'static mut [u64; 512] {
    words(core::ptr::addr_of_mut!(DESTINATION))
}

fn address(words: &[u64; 512]) -> u64 {
    words.as_ptr() as u64
}

fn pattern(i: usize) -> u64 {
    (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x00ed_00ed_00ed_00ed
}

/// Runs `wait` with interrupts enabled, so a device MSI is taken meanwhile.
fn with_interrupts<T>(wait: impl FnOnce() -> T) -> T {
    // SAFETY: the IDT handles every vector the local APIC can deliver here.
    unsafe { asm!("sti", options(nomem, nostack)) };
    let result = wait();
    // SAFETY: back to the probes' usual state.
    unsafe { asm!("cli", options(nomem, nostack)) };
    result
}

/// One transfer that must complete and interrupt; `address` as edu's requests carry it.
fn transfer(dev: &Edu, direction: Direction, address: u64) -> Result<(), Line> {
    let before = device_interrupts();
    dev.start_dma(direction, address, 0, LENGTH)
        .map_err(|e| format_line!(e))?;
    let what = match direction {
        Direction::MemoryToBuffer => "RAM to edu",
        Direction::BufferToMemory => "edu to RAM",
    };
    let interrupted = with_interrupts(|| {
        if !dev.wait_dma(DMA_MS) {
            return Err(format_line!(
                "DMA ",
                what,
                " at ",
                hex(address, 8),
                " never finished"
            ));
        }
        let deadline = Deadline::after_ms(INTERRUPT_MS);
        while device_interrupts() == before && !deadline.passed() {
            core::hint::spin_loop();
        }
        Ok(device_interrupts() != before)
    })?;
    let status = dev.interrupt_status();
    if status & DMA_DONE == 0 {
        return Err(format_line!(
            "DMA ",
            what,
            ": interrupt status ",
            hex(status.into(), 8)
        ));
    }
    dev.acknowledge(status);
    if !interrupted {
        return Err(format_line!("DMA ", what, " finished but no MSI arrived"));
    }
    Ok(())
}

/// Copies SOURCE to edu and back into DESTINATION through these device addresses.
fn round_trip(dev: &Edu, source_at: u64, destination_at: u64) -> Result<(), Line> {
    for (i, w) in source().iter_mut().enumerate() {
        *w = pattern(i);
    }
    destination().fill(SENTINEL);
    transfer(dev, Direction::MemoryToBuffer, source_at)?;
    transfer(dev, Direction::BufferToMemory, destination_at)?;
    let expected = |i: usize| if i < WORDS { pattern(i) } else { SENTINEL };
    if let Some(i) = (0..512).find(|&i| destination()[i] != expected(i)) {
        return Err(format_line!(
            "word ",
            i,
            " came back as ",
            hex(destination()[i], 16),
            " via ",
            hex(source_at, 8),
            "/",
            hex(destination_at, 8)
        ));
    }
    Ok(())
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let bdf = edu::find().ok_or_else(|| format_line!("no edu device (1234:11e8) on bus 0"))?;
    let dev = Edu::open(bdf).ok_or_else(|| format_line!("edu BAR 0 is not placed"))?;
    let id = dev.identification();
    if id != IDENTIFICATION {
        return Err(format_line!("identification reads ", hex(id.into(), 8)));
    }
    let apic = LocalApic::current().map_err(|e| format_line!(e))?;
    apic.enable();
    bdf.enable_msi(
        0xfee0_0000 | u64::from(apic.id()) << 12,
        DEVICE_VECTOR.into(),
    )
    .map_err(|e| format_line!(e))?;
    if !bdf.msi_enabled() {
        return Err(format_line!("MSI enable does not read back"));
    }
    // Interrupts of an earlier run of the device, if any, are not ours.
    dev.acknowledge(dev.interrupt_status());
    let (gpa_source, gpa_destination) = (address(source()), address(destination()));
    if (gpa_source | gpa_destination) & !DMA_MASK != 0 {
        return Err(format_line!("buffers above edu's 28-bit DMA mask"));
    }

    match virtio_iommu::find() {
        None => direct(&dev, id),
        Some(iommu) => through_iommu(ctx, &dev, id, iommu, virtio_iommu::endpoint_id(bdf)),
    }
}

/// No virtio-iommu: nestor maps all guest RAM at IOVA = GPA.
fn direct(dev: &Edu, id: u32) -> Outcome {
    let (gpa_source, gpa_destination) = (address(source()), address(destination()));
    round_trip(dev, gpa_source, gpa_destination)?;
    kprintln!(
        "edu: id ",
        hex(id.into(), 8),
        " dma=guest-physical ",
        hex(gpa_source, 8),
        "->",
        hex(gpa_destination, 8),
        " bytes=",
        LENGTH,
        " msi=",
        device_interrupts()
    );
    Ok(())
}

/// Behind the virtio-iommu: edu's endpoint in a domain, the buffers at IOVAs.
fn through_iommu(ctx: &Context, dev: &Edu, id: u32, iommu: Bdf, endpoint: u32) -> Outcome {
    let mut iommu = VirtioIommu::open(iommu)?;
    let (gpa_source, gpa_destination) = (address(source()), address(destination()));
    let (domain, _) = iommu.domain_range();
    iommu.attach(domain, endpoint, 0)?;
    iommu.map(domain, IOVA_SOURCE, 0x1000, gpa_source, MAP_F_READ)?;
    iommu.map(
        domain,
        IOVA_DESTINATION,
        0x1000,
        gpa_destination,
        MAP_F_WRITE,
    )?;
    round_trip(dev, IOVA_SOURCE, IOVA_DESTINATION)?;

    // Unmapped: a transfer to the stale IOVA reaches neither the buffer nor the
    // guest-physical page at the IOVA's number (where an identity map would put it).
    iommu.unmap(domain, IOVA_DESTINATION, 0x1000)?;
    let same_number = ram_holds(ctx, IOVA_DESTINATION).then_some(IOVA_DESTINATION as *mut Page);
    if let Some(page) = same_number {
        words(page).fill(SENTINEL);
    }
    destination().fill(SENTINEL);
    dev.start_dma(Direction::BufferToMemory, IOVA_DESTINATION, 0, LENGTH)
        .map_err(|e| format_line!(e))?;
    let finished = with_interrupts(|| dev.wait_dma(DMA_MS));
    if !finished {
        return Err(format_line!("DMA to the unmapped IOVA never finished"));
    }
    Deadline::after_ms(SETTLE_MS).wait();
    dev.acknowledge(dev.interrupt_status());
    if let Some(i) = (0..512).find(|&i| destination()[i] != SENTINEL) {
        return Err(format_line!(
            "DMA to an unmapped IOVA reached the buffer (word ",
            i,
            ")"
        ));
    }
    let landed_at_number =
        same_number.and_then(|page| words(page).iter().position(|&w| w != SENTINEL));
    if let Some(i) = landed_at_number {
        return Err(format_line!(
            "DMA to an unmapped IOVA reached GPA ",
            hex(IOVA_DESTINATION, 8),
            " (word ",
            i,
            ")"
        ));
    }

    // Mapped again, the same transfer lands: edu was not what stopped it.
    iommu.map(
        domain,
        IOVA_DESTINATION,
        0x1000,
        gpa_destination,
        MAP_F_WRITE,
    )?;
    transfer(dev, Direction::BufferToMemory, IOVA_DESTINATION)?;
    if (0..WORDS).any(|i| destination()[i] != pattern(i)) {
        return Err(format_line!(
            "remapped destination did not receive the buffer"
        ));
    }
    iommu.unmap(domain, IOVA_SOURCE, 0x2000)?;
    iommu.detach(domain, endpoint)?;
    kprintln!(
        "edu: id ",
        hex(id.into(), 8),
        " dma=iova endpoint=",
        hex(endpoint.into(), 4),
        " domain=",
        domain,
        " ",
        hex(IOVA_SOURCE, 8),
        "->",
        hex(IOVA_DESTINATION, 8),
        " bytes=",
        LENGTH,
        " stale-iova=blocked",
        " checked-gpa=",
        if same_number.is_some() { "yes" } else { "no" },
        " msi=",
        device_interrupts()
    );
    Ok(())
}

/// Whether the memory map gives `[at, at + 4 KiB)` to RAM.
fn ram_holds(ctx: &Context, at: u64) -> bool {
    ctx.start_info
        .regions()
        .any(|r| r.kind == RAM && r.addr <= at && at + 0x1000 <= r.end())
}
