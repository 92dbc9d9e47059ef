//! A descriptor chain as the virtio-iommu sees it: a device-readable byte stream followed by
//! a device-writable byte stream, however the driver split them into descriptors.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

/// The chain broke the rules (readable after writable, unreadable memory, or lengths that
/// do not fit in 32 bits): the device answers it with used length 0 and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedChain;

#[derive(Debug)]
pub struct ChainBuffers {
    /// The first bytes of the readable stream, at most the prefix asked for.
    pub readable: Vec<u8>,
    pub readable_len: u64,
    writable: Vec<(GuestAddress, u32)>,
    pub writable_len: u32,
}

impl ChainBuffers {
    /// Walks `chain`, reading at most `prefix` readable bytes.
    pub fn collect<M, T>(
        mem: &M,
        chain: DescriptorChain<T>,
        prefix: usize,
    ) -> Result<Self, MalformedChain>
    where
        M: GuestMemory + ?Sized,
        T: Deref,
        T::Target: GuestMemory,
    {
        let mut buffers = ChainBuffers {
            readable: Vec::new(),
            readable_len: 0,
            writable: Vec::new(),
            writable_len: 0,
        };
        for desc in chain {
            if desc.is_write_only() {
                buffers.writable_len = buffers
                    .writable_len
                    .checked_add(desc.len())
                    .ok_or(MalformedChain)?;
                buffers.writable.push((desc.addr(), desc.len()));
                continue;
            }
            if !buffers.writable.is_empty() {
                return Err(MalformedChain);
            }
            buffers.readable_len += u64::from(desc.len());
            let want = (prefix - buffers.readable.len()).min(desc.len() as usize);
            if want > 0 {
                let start = buffers.readable.len();
                buffers.readable.resize(start + want, 0);
                mem.read_slice(&mut buffers.readable[start..], desc.addr())
                    .map_err(|_| MalformedChain)?;
            }
        }
        Ok(buffers)
    }

    /// Writes `bytes` at `offset` of the writable stream; never past its end.
    pub fn write_at<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        offset: u32,
        bytes: &[u8],
    ) -> Result<(), MalformedChain> {
        let end = u64::from(offset) + bytes.len() as u64;
        if end > u64::from(self.writable_len) {
            return Err(MalformedChain);
        }
        let mut skip = u64::from(offset);
        let mut rest = bytes;
        for &(addr, len) in &self.writable {
            if rest.is_empty() {
                break;
            }
            let len = u64::from(len);
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = ((len - skip) as usize).min(rest.len());
            let at = addr.checked_add(skip).ok_or(MalformedChain)?;
            mem.write_slice(&rest[..n], at)
                .map_err(|_| MalformedChain)?;
            rest = &rest[n..];
            skip = 0;
        }
        Ok(())
    }
}
