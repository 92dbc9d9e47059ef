//! `virtio-rng`: the entropy device fills a 64-byte buffer, and not with one repeated byte.

use super::{Context, Outcome, Probe};
use crate::virtio_pci::{self, Page, Ring, VirtioPci, F_VERSION_1};
use unikernel::format_line;

pub const PROBE: Probe = Probe {
    name: "virtio-rng",
    run,
};

const VIRTIO_RNG: u16 = 4;
const BYTES: u32 = 64;
const COMPLETION_MS: u64 = 5000;

static mut RING: Ring = Ring::ZERO;
static mut BUFFER: Page = Page::ZERO;

fn run(_ctx: &Context, _arg: Option<&str>) -> Outcome {
    let bdf = virtio_pci::find(virtio_pci::device_id(VIRTIO_RNG))
        .ok_or_else(|| format_line!("no virtio-rng device"))?;
    let dev = VirtioPci::open(bdf).ok_or_else(|| format_line!("virtio capabilities missing"))?;
    dev.negotiate(F_VERSION_1)
        .ok_or_else(|| format_line!("FEATURES_OK refused"))?;
    // SAFETY: statics only this single-threaded probe uses; identity mapped.
    let (ring, buffer) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(RING),
            &mut *core::ptr::addr_of_mut!(BUFFER),
        )
    };
    let address = ring as *mut Ring as u64;
    let mut queue = dev
        .setup_queue(0, ring, address)
        .ok_or_else(|| format_line!("queue 0 unavailable"))?;
    dev.driver_ok();
    queue.post(0, &[(buffer.address(), BYTES, true)]);
    queue.kick();
    let (_, used) = queue
        .wait_used(COMPLETION_MS)
        .ok_or_else(|| format_line!("request never completed"))?;
    if used != BYTES {
        return Err(format_line!("used length ", used));
    }
    let bytes = &buffer.0[..BYTES as usize];
    if bytes.iter().all(|&b| b == bytes[0]) {
        return Err(format_line!("64 bytes all ", bytes[0]));
    }
    Ok(())
}
