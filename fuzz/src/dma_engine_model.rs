//! A reference model of the DMA engine's ring (docs/dma-engine.md), written from the spec
//! rather than from the device code: which status each job gets, which bytes it writes,
//! where the engine halts. It runs on a [`Shadow`] of guest RAM.

use crate::guest::{reachable, Shadow, HIGH_START, LOW_END, RAM_END};

pub const SLOT: u64 = 64;
pub const CHUNK: u64 = 64 * 1024;
pub const MAX_JOB: u64 = 1 << 20;

pub const OK: u32 = 1;
pub const BAD_OPCODE: u32 = 2;
pub const BAD_DESCRIPTOR: u32 = 3;
pub const PASID_UNSUPPORTED: u32 = 4;
pub const TRANSLATION_FAULT: u32 = 5;
pub const MEMORY_FAULT: u32 = 6;

pub const HALT_BAD_DOORBELL: u32 = 2;
pub const HALT_RING_FAULT: u32 = 3;

/// One IOVA range mapped onto guest-physical memory.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub iova: u64,
    pub len: u64,
    pub gpa: u64,
    pub read: bool,
    pub write: bool,
}

/// How the engine's addresses reach RAM: as they are, or through mappings that do not
/// overlap.
#[derive(Debug, Clone)]
pub enum Addressing {
    Physical,
    Mapped(Vec<Mapping>),
}

#[derive(Debug)]
enum Fault {
    Translation,
    /// Translated (or physical), but some piece is outside RAM: the pieces, of which a
    /// write lands up to the first byte outside RAM.
    Memory(Vec<(u64, u64)>),
}

impl Addressing {
    /// The guest-physical pieces of `[addr, addr + len)` for a read or a write.
    fn translate(&self, addr: u64, len: u64, write: bool) -> Result<Vec<(u64, u64)>, Fault> {
        let pieces = match self {
            Addressing::Physical => vec![(addr, len)],
            Addressing::Mapped(maps) => {
                let mut pieces = Vec::new();
                // The seam refuses a range that ends at 2^64 before translating it.
                let end = addr.checked_add(len).ok_or(Fault::Translation)?;
                let mut at = addr;
                while at < end {
                    let m = maps
                        .iter()
                        .find(|m| at >= m.iova && at - m.iova < m.len)
                        .ok_or(Fault::Translation)?;
                    if !(if write { m.write } else { m.read }) {
                        return Err(Fault::Translation);
                    }
                    let n = (m.iova + m.len - at).min(end - at);
                    pieces.push((m.gpa + (at - m.iova), n));
                    at += n;
                }
                pieces
            }
        };
        if pieces.iter().all(|&(gpa, n)| reachable(gpa, n)) {
            Ok(pieces)
        } else {
            Err(Fault::Memory(pieces))
        }
    }

    /// Where a driver's write of `[addr, addr + len)` lands, ignoring permissions (the
    /// driver writes RAM, not through the IOMMU); None when some of it is not RAM.
    pub fn driver_pieces(&self, addr: u64, len: u64) -> Option<Vec<(u64, u64)>> {
        let all = match self {
            Addressing::Physical => Addressing::Physical,
            Addressing::Mapped(maps) => Addressing::Mapped(
                maps.iter()
                    .map(|m| Mapping {
                        read: true,
                        write: true,
                        ..*m
                    })
                    .collect(),
            ),
        };
        all.translate(addr, len, true).ok()
    }
}

/// What the model expects after the engine served the ring.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub head: u32,
    pub halted: u32,
}

pub struct EngineModel<'a> {
    pub addressing: &'a Addressing,
    pub ram: &'a mut Shadow,
}

/// How many bytes from `gpa` on are RAM, up to `n`.
fn in_ram(gpa: u64, n: u64) -> u64 {
    let end = if gpa < LOW_END {
        LOW_END
    } else if (HIGH_START..RAM_END).contains(&gpa) {
        RAM_END
    } else {
        return 0;
    };
    n.min(end - gpa)
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl EngineModel<'_> {
    fn read(&self, pieces: &[(u64, u64)], buf: &mut [u8]) {
        let mut done = 0;
        for &(gpa, n) in pieces {
            self.ram.read(gpa, &mut buf[done..done + n as usize]);
            done += n as usize;
        }
    }

    fn write(&mut self, pieces: &[(u64, u64)], data: &[u8]) {
        let mut done = 0;
        for &(gpa, n) in pieces {
            self.ram.write(gpa, &data[done..done + n as usize]);
            done += n as usize;
        }
    }

    /// A write that faulted: a memory fault lands up to the first byte outside RAM.
    fn write_fault(&mut self, fault: Fault, data: &[u8]) -> u32 {
        match fault {
            Fault::Translation => TRANSLATION_FAULT,
            Fault::Memory(pieces) => {
                let mut done = 0;
                for (gpa, n) in pieces {
                    let landed = in_ram(gpa, n);
                    if landed < n {
                        if landed > 0 {
                            self.ram.write(gpa, &data[done..done + landed as usize]);
                        }
                        break;
                    }
                    self.ram.write(gpa, &data[done..done + n as usize]);
                    done += n as usize;
                }
                MEMORY_FAULT
            }
        }
    }

    /// Runs one job; returns its 24 completion bytes.
    fn job(&mut self, d: &[u8; 40]) -> [u8; 24] {
        let (opcode, flags) = (d[0], d[1]);
        let reserved = u16::from_le_bytes([d[2], d[3]]);
        let pasid = u32::from_le_bytes([d[4], d[5], d[6], d[7]]);
        let (src, dst, len, pattern) = (le64(d, 8), le64(d, 16), le64(d, 24), le64(d, 32));
        let status = if opcode != 1 && opcode != 2 {
            Some(BAD_OPCODE)
        } else if flags & !3 != 0 || reserved != 0 {
            Some(BAD_DESCRIPTOR)
        } else if flags & 2 != 0 {
            Some(PASID_UNSUPPORTED)
        } else if pasid != 0
            || len == 0
            || len > MAX_JOB
            || dst.checked_add(len - 1).is_none()
            || (opcode == 1
                && (src.checked_add(len - 1).is_none()
                    || (src < dst.saturating_add(len) && dst < src.saturating_add(len))))
        {
            Some(BAD_DESCRIPTOR)
        } else {
            None
        };
        let mut out = [0u8; 24];
        let (status, fault_write, done, at) = match status {
            Some(s) => (s, false, 0, 0),
            None => self.run(opcode, src, dst, len, pattern),
        };
        out[0..4].copy_from_slice(&status.to_le_bytes());
        out[4..8].copy_from_slice(&u32::from(fault_write).to_le_bytes());
        out[8..16].copy_from_slice(&done.to_le_bytes());
        out[16..24].copy_from_slice(&at.to_le_bytes());
        out
    }

    /// (status, write fault, bytes done, fault address)
    fn run(
        &mut self,
        opcode: u8,
        src: u64,
        dst: u64,
        len: u64,
        pattern: u64,
    ) -> (u32, bool, u64, u64) {
        let mut off = 0;
        while off < len {
            let n = (len - off).min(CHUNK);
            let mut chunk = vec![0u8; n as usize];
            if opcode == 1 {
                match self.addressing.translate(src + off, n, false) {
                    Ok(pieces) => self.read(&pieces, &mut chunk),
                    Err(Fault::Translation) => return (TRANSLATION_FAULT, false, off, src + off),
                    Err(Fault::Memory(_)) => return (MEMORY_FAULT, false, off, src + off),
                }
            } else {
                let bytes = pattern.to_le_bytes();
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b = bytes[i % 8];
                }
            }
            match self.addressing.translate(dst + off, n, true) {
                Ok(pieces) => self.write(&pieces, &chunk),
                Err(fault) => return (self.write_fault(fault, &chunk), true, off, dst + off),
            }
            off += n;
        }
        (OK, false, len, 0)
    }

    /// Serves jobs from head 0 up to `tail` on a valid ring.
    pub fn serve(&mut self, base: u64, slots: u32, tail: u32) -> Outcome {
        let mut head = 0u32;
        loop {
            let waiting = tail.wrapping_sub(head);
            if waiting == 0 {
                return Outcome { head, halted: 0 };
            }
            if waiting > slots {
                return Outcome {
                    head,
                    halted: HALT_BAD_DOORBELL,
                };
            }
            let slot = base + u64::from(head & (slots - 1)) * SLOT;
            let halt = Outcome {
                head,
                halted: HALT_RING_FAULT,
            };
            let Ok(pieces) = self.addressing.translate(slot, 40, false) else {
                return halt;
            };
            let mut descriptor = [0u8; 40];
            self.read(&pieces, &mut descriptor);
            let completion = self.job(&descriptor);
            match self.addressing.translate(slot + 40, 24, true) {
                Ok(pieces) => self.write(&pieces, &completion),
                Err(fault) => {
                    self.write_fault(fault, &completion);
                    return halt;
                }
            }
            head = head.wrapping_add(1);
        }
    }
}
