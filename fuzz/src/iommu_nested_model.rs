//! The reference model's side of nestor's extension (docs/virtio-iommu-nested.md):
//! ATTACH_TABLE, INVALIDATE and PAGE_RESP statuses and what ATTACH_TABLE does to domains,
//! and the NESTOR_SMMUV3 PROBE property. Written from the document's tables, apart from
//! the device's parser.

pub const FEATURE_ATTACH_TABLE: u64 = 1 << 20;
pub const FEATURE_PAGE_REQUEST: u64 = 1 << 21;
pub const ATTACH_TABLE: u8 = 6;
pub const INVALIDATE: u8 = 7;
pub const PAGE_RESP: u8 = 8;
pub const S_UNSUPP: u8 = 2;
pub const PROPERTY_SIZE: usize = 56;

use super::iommu_model::{S_INVAL, S_NOENT, S_OK, S_RANGE};

/// What the model knows of nested mode: the SMMU's ID registers (IDR0-5) and guest RAM.
#[derive(Debug, Clone)]
pub struct NestedModel {
    pub idr: [u32; 6],
    /// `[start, end)` ranges.
    pub ram: Vec<(u64, u64)>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// An ATTACH_TABLE whose bytes passed: the domain, endpoint and STE words.
pub struct AttachTable {
    pub domain: u32,
    pub endpoint: u32,
    pub words: (u64, u64),
}

impl NestedModel {
    fn in_ram(&self, start: u64, len: u64) -> bool {
        let last = start.wrapping_add(len - 1);
        last >= start
            && [start, last]
                .iter()
                .all(|&a| self.ram.iter().any(|&(s, e)| a >= s && a < e))
    }

    /// The ATTACH_TABLE fields, or the status its bytes alone earn (section 3.1).
    pub fn parse_attach_table(req: &[u8]) -> Result<AttachTable, u8> {
        let (ste0, ste1) = (le64(req, 16), le64(req, 24));
        if req[12] != 1 || !zero(&req[13..16]) || !zero(&req[32..124]) {
            return Err(S_INVAL);
        }
        if ste0 & !0xf80f_ffff_ffff_ffff != 0 || ste1 & !0x3800_00ff != 0 {
            return Err(S_INVAL);
        }
        if ste0 & 1 != 0 {
            let config = ste0 >> 1 & 7;
            if !matches!(config, 0b000 | 0b100 | 0b101) || ste1 >> 28 & 3 > 1 {
                return Err(S_INVAL);
            }
            if config == 0b101 && ste0 >> 4 & 3 == 3 {
                return Err(S_INVAL);
            }
        }
        Ok(AttachTable {
            domain: le32(req, 4),
            endpoint: le32(req, 8),
            words: (ste0, ste1),
        })
    }

    /// RANGE for a translating STE whose CD table is not in RAM or whose S1CDMax passes
    /// SSIDSIZE.
    pub fn check_ste(&self, (ste0, _): (u64, u64)) -> u8 {
        if ste0 & 1 == 0 || ste0 >> 1 & 7 != 0b101 {
            return S_OK;
        }
        let ssid_bits = u64::from(self.idr[1] >> 6 & 0x1f);
        if !self.in_ram(ste0 & 0x000f_ffff_ffff_ffc0, 64) || ste0 >> 59 > ssid_bits {
            return S_RANGE;
        }
        S_OK
    }

    /// INVALIDATE's domain, or the status its bytes alone earn (section 3.2).
    pub fn parse_invalidate(req: &[u8]) -> Result<u32, u8> {
        const CD: u8 = 1;
        const TLB: u8 = 2;
        const DEVICE_TLB: u8 = 4;
        const LEAF: u16 = 1;
        const PASID: u16 = 2;
        const ASID: u16 = 4;
        const ALL_ASIDS: u16 = 8;
        let (scope, caches, flags) = (req[4], req[5], le16(req, 6));
        if caches == 0
            || caches & !7 != 0
            || flags & !0xf != 0
            || !zero(&req[18..24])
            || !zero(&req[41..60])
        {
            return Err(S_INVAL);
        }
        let only = |allowed: u16| {
            if flags & !(allowed | LEAF) != 0 {
                Err(S_INVAL)
            } else {
                Ok(())
            }
        };
        let range = || {
            let (address, pages, shift) = (le64(req, 24), le64(req, 32), req[40]);
            if ![12, 14, 16].contains(&shift) || pages == 0 || address % (1 << shift) != 0 {
                return Err(S_INVAL);
            }
            let bytes = pages.checked_mul(1 << shift).ok_or(S_RANGE)?;
            address.checked_add(bytes - 1).ok_or(S_RANGE).map(|_| ())
        };
        if caches & CD != 0 {
            match scope {
                2 => {
                    only(PASID)?;
                    if flags & PASID == 0 {
                        return Err(S_INVAL);
                    }
                }
                1 => only(0)?,
                _ => return Err(S_INVAL),
            }
        }
        if caches & TLB != 0 {
            match scope {
                1 => only(ASID)?,
                3 => {
                    only(ASID | ALL_ASIDS)?;
                    range()?;
                    if (flags & ASID != 0) == (flags & ALL_ASIDS != 0) {
                        return Err(S_INVAL);
                    }
                }
                _ => return Err(S_INVAL),
            }
        }
        if caches & DEVICE_TLB != 0 {
            only(PASID)?;
            match scope {
                2 => {}
                3 => range()?,
                _ => return Err(S_INVAL),
            }
        }
        Ok(le32(req, 8))
    }

    /// PAGE_RESP: no page request is ever reported, so a well-formed one answers none.
    pub fn page_resp(req: &[u8]) -> u8 {
        if le32(req, 8) & !1 != 0 || !zero(&req[22..28]) || le16(req, 20) > 2 {
            return S_INVAL;
        }
        S_NOENT
    }

    /// The NESTOR_SMMUV3 property: the IDR fields iommufd vouches for (section 5).
    pub fn property(&self) -> [u8; PROPERTY_SIZE] {
        const IDR0: u32 =
            0b11 << 27 | 1 << 26 | 0b11 << 24 | 0b11 << 21 | 1 << 19 | 1 << 12 | 0b11 << 2;
        const IDR1: u32 = 0x1f << 6 | 0x3f;
        const IDR3: u32 = 0b11 << 11 | 1 << 10;
        const IDR5: u32 = 0b11 << 10 | 0b111 << 4;
        let mut p = [0u8; PROPERTY_SIZE];
        p[0..2].copy_from_slice(&0x800u16.to_le_bytes());
        p[2..4].copy_from_slice(&52u16.to_le_bytes());
        for (at, value) in [
            (8, self.idr[0] & IDR0),
            (16, self.idr[1] & IDR1),
            (32, self.idr[3] & IDR3),
            (48, self.idr[5] & IDR5),
        ] {
            p[at..at + 8].copy_from_slice(&u64::from(value).to_le_bytes());
        }
        p
    }
}

/// Bytes of the device-readable part of extension request `kind`.
pub fn readable_size(kind: u8) -> Option<usize> {
    match kind {
        ATTACH_TABLE => Some(124),
        INVALIDATE => Some(60),
        PAGE_RESP => Some(28),
        _ => None,
    }
}
