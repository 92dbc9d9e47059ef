//! The job ring's wire format: one 64-byte slot per job, the job the driver writes in its
//! first 40 bytes and the completion the engine writes back in the last 24
//! (docs/dma-engine.md).

/// Bytes per ring slot.
pub const SLOT_SIZE: u64 = 64;
/// Where the completion starts within a slot.
pub const COMPLETION_OFFSET: u64 = 40;

/// Opcodes.
pub const OP_COPY: u8 = 1;
pub const OP_FILL: u8 = 2;

/// Job flags.
pub const FLAG_INTERRUPT: u8 = 1 << 0;
pub const FLAG_PASID: u8 = 1 << 1;
const FLAGS_DEFINED: u8 = FLAG_INTERRUPT | FLAG_PASID;
/// A PASID is 20 bits wide.
const PASID_MASK: u32 = 0x000f_ffff;

/// The longest job, in bytes: bounds the work one ring slot can ask for.
pub const MAX_JOB_LEN: u64 = 1 << 20;

/// A job as the driver wrote it: little-endian, 40 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobDescriptor {
    pub opcode: u8,
    pub flags: u8,
    pub reserved: u16,
    pub pasid: u32,
    pub source: u64,
    pub destination: u64,
    pub length: u64,
    pub pattern: u64,
}

pub const JOB_DESCRIPTOR_SIZE: usize = 40;
const _: () = assert!(std::mem::size_of::<JobDescriptor>() == JOB_DESCRIPTOR_SIZE);

/// What the engine writes back: little-endian, 24 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completion {
    pub status: u32,
    pub fault_flags: u32,
    pub bytes_done: u64,
    pub fault_address: u64,
}

pub const COMPLETION_SIZE: usize = 24;
const _: () = assert!(std::mem::size_of::<Completion>() == COMPLETION_SIZE);
const _: () = assert!(COMPLETION_OFFSET as usize == JOB_DESCRIPTOR_SIZE);
const _: () = assert!(JOB_DESCRIPTOR_SIZE + COMPLETION_SIZE == SLOT_SIZE as usize);

/// Completion status codes. 0 is never written: a driver clears the status before it posts a
/// job and sees a non-zero one once the job is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum JobStatus {
    Ok = 1,
    BadOpcode = 2,
    BadDescriptor = 3,
    PasidUnsupported = 4,
    /// The IOMMU refused an access (unmapped, without the permission, endpoint blocked).
    TranslationFault = 5,
    /// An address (translated or not) is outside guest RAM.
    MemoryFault = 6,
    /// The engine asked for a page (PRI) and the answer was a failure, or none came in time;
    /// nothing was written.
    PageRequestFailed = 7,
}

/// `fault_flags` bit: the access that faulted was a write.
pub const FAULT_WRITE: u32 = 1 << 0;

fn u64_at(bytes: &[u8; JOB_DESCRIPTOR_SIZE], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl JobDescriptor {
    pub fn from_le_bytes(bytes: &[u8; JOB_DESCRIPTOR_SIZE]) -> Self {
        Self {
            opcode: bytes[0],
            flags: bytes[1],
            reserved: u16::from_le_bytes([bytes[2], bytes[3]]),
            pasid: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            source: u64_at(bytes, 8),
            destination: u64_at(bytes, 16),
            length: u64_at(bytes, 24),
            pattern: u64_at(bytes, 32),
        }
    }

    pub fn to_le_bytes(&self) -> [u8; JOB_DESCRIPTOR_SIZE] {
        let mut b = [0u8; JOB_DESCRIPTOR_SIZE];
        b[0] = self.opcode;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.reserved.to_le_bytes());
        b[4..8].copy_from_slice(&self.pasid.to_le_bytes());
        b[8..16].copy_from_slice(&self.source.to_le_bytes());
        b[16..24].copy_from_slice(&self.destination.to_le_bytes());
        b[24..32].copy_from_slice(&self.length.to_le_bytes());
        b[32..40].copy_from_slice(&self.pattern.to_le_bytes());
        b
    }

    pub fn wants_interrupt(&self) -> bool {
        self.flags & FLAG_INTERRUPT != 0
    }

    /// [`JobDescriptor::validate_for`] on an engine that serves no PASIDs.
    pub fn validate(&self) -> Result<Job, JobStatus> {
        self.validate_for(false)
    }

    /// The PASID the job's accesses carry (flag PASID).
    pub fn pasid_tag(&self) -> Option<u32> {
        (self.flags & FLAG_PASID != 0).then_some(self.pasid)
    }

    /// Checks everything that does not need memory; `Ok` is a job the engine can run.
    /// `serves_pasids`: the engine is in nested translation with PASID Enable set, so a
    /// job may carry a PASID.
    pub fn validate_for(&self, serves_pasids: bool) -> Result<Job, JobStatus> {
        if self.opcode != OP_COPY && self.opcode != OP_FILL {
            return Err(JobStatus::BadOpcode);
        }
        if self.flags & !FLAGS_DEFINED != 0 || self.reserved != 0 {
            return Err(JobStatus::BadDescriptor);
        }
        if self.flags & FLAG_PASID != 0 {
            if !serves_pasids {
                return Err(JobStatus::PasidUnsupported);
            }
            if self.pasid & !PASID_MASK != 0 {
                return Err(JobStatus::BadDescriptor);
            }
        } else if self.pasid != 0 {
            // Without FLAG_PASID the field means nothing and must be 0.
            return Err(JobStatus::BadDescriptor);
        }
        if self.length == 0 || self.length > MAX_JOB_LEN {
            return Err(JobStatus::BadDescriptor);
        }
        let ends = |start: u64| start.checked_add(self.length - 1).is_some();
        if !ends(self.destination) {
            return Err(JobStatus::BadDescriptor);
        }
        match self.opcode {
            OP_COPY => {
                if !ends(self.source) || overlaps(self.source, self.destination, self.length) {
                    return Err(JobStatus::BadDescriptor);
                }
                Ok(Job::Copy {
                    source: self.source,
                    destination: self.destination,
                    length: self.length,
                })
            }
            _ => Ok(Job::Fill {
                destination: self.destination,
                length: self.length,
                pattern: self.pattern,
            }),
        }
    }
}

/// Whether `[a, a + len)` and `[b, b + len)` share a byte (neither wraps).
fn overlaps(a: u64, b: u64, len: u64) -> bool {
    a < b.saturating_add(len) && b < a.saturating_add(len)
}

/// A validated job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Copy {
        source: u64,
        destination: u64,
        length: u64,
    },
    /// `pattern`'s little-endian bytes repeated from the first byte of the destination.
    Fill {
        destination: u64,
        length: u64,
        pattern: u64,
    },
}

impl Completion {
    pub fn to_le_bytes(&self) -> [u8; COMPLETION_SIZE] {
        let mut b = [0u8; COMPLETION_SIZE];
        b[0..4].copy_from_slice(&self.status.to_le_bytes());
        b[4..8].copy_from_slice(&self.fault_flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.bytes_done.to_le_bytes());
        b[16..24].copy_from_slice(&self.fault_address.to_le_bytes());
        b
    }

    pub fn from_le_bytes(b: &[u8; COMPLETION_SIZE]) -> Self {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        Self {
            status: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            fault_flags: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            bytes_done: word(8),
            fault_address: word(16),
        }
    }

    /// A job refused before it touched memory.
    pub fn refused(status: JobStatus) -> Self {
        Self {
            status: status as u32,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(source: u64, destination: u64, length: u64) -> JobDescriptor {
        JobDescriptor {
            opcode: OP_COPY,
            source,
            destination,
            length,
            ..Default::default()
        }
    }

    #[test]
    fn wire_format_round_trips_little_endian() {
        let d = JobDescriptor {
            opcode: OP_FILL,
            flags: FLAG_INTERRUPT,
            reserved: 0x0102,
            pasid: 0x0304_0506,
            source: 0x1111_2222_3333_4444,
            destination: 0x5555_6666_7777_8888,
            length: 0x99,
            pattern: 0xaabb_ccdd_eeff_0011,
        };
        let bytes = d.to_le_bytes();
        assert_eq!(&bytes[..8], &[2, 1, 2, 1, 6, 5, 4, 3]);
        assert_eq!(&bytes[16..24], &0x5555_6666_7777_8888u64.to_le_bytes());
        assert_eq!(JobDescriptor::from_le_bytes(&bytes), d);
        let c = Completion {
            status: 5,
            fault_flags: FAULT_WRITE,
            bytes_done: 0x1000,
            fault_address: 0x8000_0000,
        };
        let bytes = c.to_le_bytes();
        assert_eq!(&bytes[..8], &[5, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(Completion::from_le_bytes(&bytes), c);
    }

    #[test]
    fn valid_jobs_pass() {
        assert_eq!(
            copy(0x1000, 0x2000, 0x1000).validate(),
            Ok(Job::Copy {
                source: 0x1000,
                destination: 0x2000,
                length: 0x1000
            })
        );
        let fill = JobDescriptor {
            opcode: OP_FILL,
            flags: FLAG_INTERRUPT,
            destination: u64::MAX - 7,
            length: 8,
            pattern: 7,
            source: 0xdead, // ignored by a fill
            ..Default::default()
        };
        assert!(fill.validate().is_ok());
        assert!(copy(0, MAX_JOB_LEN, MAX_JOB_LEN).validate().is_ok());
    }

    #[test]
    fn hostile_descriptors_get_a_status() {
        let bad = |d: JobDescriptor, want: JobStatus| assert_eq!(d.validate(), Err(want), "{d:?}");
        bad(
            JobDescriptor {
                opcode: 0,
                ..copy(0, 0x1000, 1)
            },
            JobStatus::BadOpcode,
        );
        bad(
            JobDescriptor {
                opcode: 0xff,
                ..copy(0, 0x1000, 1)
            },
            JobStatus::BadOpcode,
        );
        bad(
            JobDescriptor {
                flags: 0x80,
                ..copy(0, 0x1000, 1)
            },
            JobStatus::BadDescriptor,
        );
        bad(
            JobDescriptor {
                reserved: 1,
                ..copy(0, 0x1000, 1)
            },
            JobStatus::BadDescriptor,
        );
        bad(
            JobDescriptor {
                flags: FLAG_PASID,
                pasid: 1,
                ..copy(0, 0x1000, 1)
            },
            JobStatus::PasidUnsupported,
        );
        bad(
            JobDescriptor {
                flags: FLAG_PASID,
                ..copy(0, 0x1000, 1)
            },
            JobStatus::PasidUnsupported,
        );
        bad(
            JobDescriptor {
                pasid: 5,
                ..copy(0, 0x1000, 1)
            },
            JobStatus::BadDescriptor,
        );
        bad(copy(0, 0x1000, 0), JobStatus::BadDescriptor);
        bad(copy(0, 0x1000, MAX_JOB_LEN + 1), JobStatus::BadDescriptor);
        bad(copy(0, 0x1000, u64::MAX), JobStatus::BadDescriptor);
        bad(copy(u64::MAX, 0x1000, 2), JobStatus::BadDescriptor);
        bad(copy(0x1000, u64::MAX - 2, 4), JobStatus::BadDescriptor);
        bad(copy(0x1000, 0x1800, 0x1000), JobStatus::BadDescriptor);
        bad(copy(0x1800, 0x1000, 0x1000), JobStatus::BadDescriptor);
        bad(copy(0x1000, 0x1000, 1), JobStatus::BadDescriptor);
        assert!(copy(0x1000, 0x2000, 0x1000).validate().is_ok());
    }

    #[test]
    fn an_engine_serving_pasids_takes_20_bit_ones() {
        let tagged = |pasid| JobDescriptor {
            flags: FLAG_PASID,
            pasid,
            ..copy(0, 0x1000, 1)
        };
        assert!(tagged(0).validate_for(true).is_ok());
        assert!(tagged(0xf_ffff).validate_for(true).is_ok());
        assert_eq!(tagged(0xf_ffff).pasid_tag(), Some(0xf_ffff));
        assert_eq!(copy(0, 0x1000, 1).pasid_tag(), None);
        assert_eq!(
            tagged(0x10_0000).validate_for(true),
            Err(JobStatus::BadDescriptor)
        );
        assert_eq!(
            JobDescriptor {
                pasid: 5,
                ..copy(0, 0x1000, 1)
            }
            .validate_for(true),
            Err(JobStatus::BadDescriptor)
        );
    }
}
