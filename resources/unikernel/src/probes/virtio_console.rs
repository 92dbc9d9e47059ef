//! `virtio-console`: a line sent on the transmit queue (port 0 of hvc0) is taken by the
//! device, which writes it to the host (nestor's stdout). The line is [`MESSAGE`].

use super::{Context, Outcome, Probe};
use crate::virtio_pci::{self, Page, Ring, VirtioPci, F_VERSION_1};
use unikernel::format_line;

pub const PROBE: Probe = Probe {
    name: "virtio-console",
    run,
};

const VIRTIO_CONSOLE: u16 = 3;
const TRANSMIT_QUEUE: u16 = 1;
const MESSAGE: &[u8] = b"virtio-console: hello from hvc0\n";
const COMPLETION_MS: u64 = 5000;

static mut RING: Ring = Ring::ZERO;
static mut BUFFER: Page = Page::ZERO;

fn run(_ctx: &Context, _arg: Option<&str>) -> Outcome {
    let bdf = virtio_pci::find(virtio_pci::device_id(VIRTIO_CONSOLE))
        .ok_or_else(|| format_line!("no virtio-console device"))?;
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
    // Only the transmit queue: the device serves whichever queues the driver enabled.
    let mut queue = dev
        .setup_queue(TRANSMIT_QUEUE, ring, address)
        .ok_or_else(|| format_line!("transmit queue unavailable"))?;
    dev.driver_ok();
    buffer.0[..MESSAGE.len()].copy_from_slice(MESSAGE);
    queue.post(0, &[(buffer.address(), MESSAGE.len() as u32, false)]);
    queue.kick();
    queue
        .wait_used(COMPLETION_MS)
        .ok_or_else(|| format_line!("the transmit buffer was never returned"))?;
    Ok(())
}
