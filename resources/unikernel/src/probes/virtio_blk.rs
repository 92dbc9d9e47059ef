//! `virtio-blk`: the first virtio-blk disk takes a known pattern and gives it back.
//! `blk_sector=N` (default 1) picks the sector; byte i of the pattern is
//! `(i * 13 + 0x21) mod 256`. On a read-only disk (VIRTIO_BLK_F_RO) the write must fail with
//! IOERR instead, and the sector must not hold the pattern afterwards.
//! Also checks FLUSH and GET_ID. Prints `virtio-blk: wrote|refused sector N`.

use super::{Context, Outcome, Probe};
use crate::virtio_pci::{self, Page, Queue, Ring, VirtioPci, F_VERSION_1};
use unikernel::format_line;
use unikernel::text::Line;

pub const PROBE: Probe = Probe {
    name: "virtio-blk",
    run,
};

const VIRTIO_BLK: u16 = 2;
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const SECTOR: usize = 512;
const DEFAULT_SECTOR: u64 = 1;
const COMPLETION_MS: u64 = 5000;

static mut RING: Ring = Ring::ZERO;
/// Request header at 0, status byte at 0x800.
static mut CONTROL: Page = Page::ZERO;
static mut DATA: Page = Page::ZERO;

fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(13).wrapping_add(0x21)
}

struct Disk {
    queue: Queue,
}

impl Disk {
    fn pages() -> (&'static mut Page, &'static mut Page) {
        // SAFETY: only this single-threaded probe touches these statics.
        unsafe {
            (
                &mut *core::ptr::addr_of_mut!(CONTROL),
                &mut *core::ptr::addr_of_mut!(DATA),
            )
        }
    }

    /// One request with `len` data bytes; returns (status, used length).
    fn request(&mut self, kind: u32, sector: u64, len: u32) -> Result<(u8, u32), Line> {
        let (control, data) = Self::pages();
        control.0[..4].copy_from_slice(&kind.to_le_bytes());
        control.0[4..8].fill(0);
        control.0[8..16].copy_from_slice(&sector.to_le_bytes());
        control.0[0x800] = 0xff;
        let head = (control.address(), 16, false);
        let status = (control.address() + 0x800, 1, true);
        let device_writes = kind != T_OUT;
        if len == 0 {
            self.queue.post(0, &[head, status]);
        } else {
            self.queue
                .post(0, &[head, (data.address(), len, device_writes), status]);
        }
        self.queue.kick();
        let (_, used) = self
            .queue
            .wait_used(COMPLETION_MS)
            .ok_or_else(|| format_line!("request type ", kind, " never completed"))?;
        Ok((control.0[0x800], used))
    }
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let sector = ctx.cmdline.number("blk_sector").unwrap_or(DEFAULT_SECTOR);
    let bdf = virtio_pci::find(virtio_pci::device_id(VIRTIO_BLK))
        .ok_or_else(|| format_line!("no virtio-blk device"))?;
    let dev = VirtioPci::open(bdf).ok_or_else(|| format_line!("virtio capabilities missing"))?;
    let offered = dev
        .negotiate(F_VERSION_1 | F_RO | F_FLUSH)
        .ok_or_else(|| format_line!("FEATURES_OK refused"))?;
    if offered & F_VERSION_1 == 0 {
        return Err(format_line!("VERSION_1 not offered"));
    }
    let capacity = u64::from(dev.device_config32(0)) | u64::from(dev.device_config32(4)) << 32;
    if sector >= capacity {
        return Err(format_line!(
            "blk_sector=",
            sector,
            " past capacity ",
            capacity
        ));
    }
    // SAFETY: the ring is a static only this probe uses; identity mapped.
    let ring = unsafe { &mut *core::ptr::addr_of_mut!(RING) };
    let address = ring as *mut Ring as u64;
    let queue = dev
        .setup_queue(0, ring, address)
        .ok_or_else(|| format_line!("queue 0 unavailable"))?;
    dev.driver_ok();
    let mut disk = Disk { queue };
    let read_only = offered & F_RO != 0;

    let (_, data) = Disk::pages();
    for (i, b) in data.0[..SECTOR].iter_mut().enumerate() {
        *b = pattern(i);
    }
    let (status, _) = disk.request(T_OUT, sector, SECTOR as u32)?;
    match (read_only, status) {
        (false, S_OK) | (true, S_IOERR) => {}
        _ => {
            return Err(format_line!(
                "write status ",
                status,
                " read-only ",
                read_only as u8
            ))
        }
    }

    data.0.fill(0);
    let (status, used) = disk.request(T_IN, sector, SECTOR as u32)?;
    if status != S_OK || used != SECTOR as u32 + 1 {
        return Err(format_line!("read status ", status, " used ", used));
    }
    let matches = data.0[..SECTOR]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(i));
    if matches == read_only {
        return Err(format_line!(
            "sector ",
            sector,
            " pattern present: ",
            matches as u8
        ));
    }

    if offered & F_FLUSH != 0 {
        let (status, _) = disk.request(T_FLUSH, 0, 0)?;
        if status != S_OK {
            return Err(format_line!("flush status ", status));
        }
    }
    let (status, used) = disk.request(T_GET_ID, 0, 20)?;
    if status != S_OK || used != 21 || &data.0[..6] != b"nestor" {
        return Err(format_line!("GET_ID status ", status, " used ", used));
    }
    let verb = if read_only { "refused" } else { "wrote" };
    crate::kprintln!("virtio-blk: ", verb, " sector ", sector);
    Ok(())
}
