//! Little-endian fields in byte buffers: device requests and records are built and read
//! through these.

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn get64(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_at_their_offsets() {
        let mut b = [0u8; 16];
        put32(&mut b, 1, 0x1122_3344);
        put64(&mut b, 8, 0x0102_0304_0506_0708);
        assert_eq!(b[1..5], [0x44, 0x33, 0x22, 0x11]);
        assert_eq!(get32(&b, 1), 0x1122_3344);
        assert_eq!(get16(&b, 1), 0x3344);
        assert_eq!(get64(&b, 8), 0x0102_0304_0506_0708);
        assert_eq!(b[8], 0x08);
    }
}
