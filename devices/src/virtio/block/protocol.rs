//! virtio-blk wire formats (virtio 1.x, 5.2): the configuration space and the request
//! header, little-endian.

pub const SECTOR_SHIFT: u32 = 9;
pub const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;

pub const REQUEST_IN: u32 = 0;
pub const REQUEST_OUT: u32 = 1;
pub const REQUEST_FLUSH: u32 = 4;
pub const REQUEST_GET_ID: u32 = 8;

pub const STATUS_OK: u8 = 0;
pub const STATUS_IOERR: u8 = 1;
pub const STATUS_UNSUPP: u8 = 2;

/// Bytes of the GET_ID answer.
pub const ID_BYTES: usize = 20;

pub const FEATURE_SEG_MAX: u64 = 1 << 2;
pub const FEATURE_RO: u64 = 1 << 5;
pub const FEATURE_FLUSH: u64 = 1 << 9;

/// struct virtio_blk_outhdr.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeader {
    pub request_type: u32,
    pub reserved: u32,
    pub sector: u64,
}

const _: () = assert!(std::mem::size_of::<RequestHeader>() == 16);

impl RequestHeader {
    pub const SIZE: usize = std::mem::size_of::<Self>();

    /// The header from its little-endian wire bytes.
    pub fn parse(raw: &[u8; Self::SIZE]) -> Self {
        let u32_at =
            |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        Self {
            request_type: u32_at(0),
            reserved: u32_at(4),
            sector: u64::from(u32_at(8)) | u64::from(u32_at(12)) << 32,
        }
    }
}

/// The start of struct virtio_blk_config: the fields nestor fills in.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockConfig {
    /// In 512-byte sectors.
    pub capacity: u64,
    pub size_max: u32,
    pub seg_max: u32,
}

const _: () = assert!(std::mem::size_of::<BlockConfig>() == 16);

impl BlockConfig {
    pub fn to_le_bytes(self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16);
        bytes.extend_from_slice(&self.capacity.to_le_bytes());
        bytes.extend_from_slice(&self.size_max.to_le_bytes());
        bytes.extend_from_slice(&self.seg_max.to_le_bytes());
        bytes
    }
}
