//! COM1 output: a polled 16550 at 0x3f8.

use crate::io::{inb, outb};
use unikernel::text::Sink;

pub const COM1: u16 = 0x3f8;
const IER: u16 = COM1 + 1;
const FCR: u16 = COM1 + 2;
const LCR: u16 = COM1 + 3;
const LSR: u16 = COM1 + 5;
pub const SCRATCH: u16 = COM1 + 7;

/// LSR: transmit holding register empty.
pub const LSR_THR_EMPTY: u8 = 1 << 5;
/// Bytes the transmit FIFO takes once THR is reported empty.
const FIFO_DEPTH: usize = 16;
/// Give up waiting for THR empty after this many polls; write anyway rather than hang.
const MAX_POLLS: u32 = 10_000;

/// No interrupts, FIFOs on and cleared, 8N1.
pub fn init() {
    outb(IER, 0);
    outb(FCR, 0x07);
    outb(LCR, 0x03);
}

fn wait_thr_empty() {
    for _ in 0..MAX_POLLS {
        if inb(LSR) & LSR_THR_EMPTY != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// The serial port as an output sink. Each poll and each byte is a VM exit, so one poll
/// is followed by up to a FIFO's worth of bytes.
pub struct Serial;

impl Sink for Serial {
    fn put(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(FIFO_DEPTH) {
            wait_thr_empty();
            for &b in chunk {
                outb(COM1, b);
            }
        }
    }
}

/// Prints its arguments (strings, integers, `hex(..)`) to COM1.
#[macro_export]
macro_rules! kprint {
    ($($item:expr),* $(,)?) => { unikernel::show!($crate::serial::Serial $(, $item)*) };
}

/// Like `kprint!`, followed by a newline.
#[macro_export]
macro_rules! kprintln {
    ($($item:expr),* $(,)?) => { unikernel::show!($crate::serial::Serial $(, $item)*, "\n") };
}
