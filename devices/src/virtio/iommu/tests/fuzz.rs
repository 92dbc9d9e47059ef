//! Random bytes from a hostile driver: nothing panics and state stays consistent.

use super::rig::*;

/// xorshift64*: deterministic, no dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_requests_never_panic_and_answer_by_the_used_length_rules() {
    let rig = Rig::new();
    let mut rnd = Random(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let kind = rnd.below(7) as u8;
        let len = rnd.below(80) as usize;
        let mut req: Vec<u8> = (0..len).map(|_| rnd.next() as u8).collect();
        if let Some(b) = req.first_mut() {
            *b = kind;
        }
        // Mostly-valid addresses keep MAP and UNMAP interesting.
        if len >= 28 && rnd.below(2) == 0 {
            req[4..8].copy_from_slice(&(rnd.below(4) as u32).to_le_bytes());
            let start = rnd.below(64) * PAGE;
            req[8..16].copy_from_slice(&start.to_le_bytes());
            req[16..24].copy_from_slice(&(start + rnd.below(8) * PAGE + PAGE - 1).to_le_bytes());
        }
        let writable = rnd.below(64) as u32;
        let reply = rig.send_split(
            &req,
            &[rnd.below(len as u64 + 1).min(8) as u32],
            &[writable],
        );
        assert!(
            reply.used_len == 0 || reply.used_len == writable,
            "used {} of {writable}",
            reply.used_len
        );
    }
    let domains = rig.state.domains();
    assert!(domains.domain_count() <= 4);
}

#[test]
fn random_dma_never_panics_whatever_the_mappings() {
    use vm_memory::{Bytes, GuestAddress, Permissions};

    let rig = Rig::new();
    let mut rnd = Random(0x1234_5678_9abc_def1);
    assert_eq!(
        rig.attach(1, DISK),
        Some(crate::virtio::iommu::protocol::Status::Ok)
    );
    for i in 0..64 {
        let start = rnd.below(256) * PAGE;
        rig.map(
            1,
            start,
            start + PAGE - 1,
            (i % 8) * PAGE,
            rnd.below(4) as u32,
        );
    }
    let accesses = [
        Permissions::No,
        Permissions::Read,
        Permissions::Write,
        Permissions::ReadWrite,
    ];
    for round in 0..4000 {
        rig.state.set_bypass(round % 2 == 0);
        let endpoint = if rnd.below(2) == 0 { DISK } else { RNG };
        let iova = match rnd.below(3) {
            0 => rnd.below(256 * PAGE),
            1 => u64::MAX - rnd.below(64),
            _ => rnd.next(),
        };
        let len = match rnd.below(3) {
            0 => rnd.below(3 * PAGE),
            1 => u64::MAX - rnd.below(4),
            _ => rnd.next(),
        };
        let access = accesses[rnd.below(4) as usize];
        let _ = rig.translator(endpoint).translate(iova, len, access);
        let dma = rig.memory(endpoint);
        let mut buf = [0u8; 64];
        let _ = dma.read_slice(&mut buf[..rnd.below(64) as usize], GuestAddress(iova));
        let _ = dma.write_slice(&buf[..rnd.below(64) as usize], GuestAddress(iova));
    }
}
