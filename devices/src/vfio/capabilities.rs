//! The device's capability list as the guest sees it: walked once from the device's own
//! configuration space, with the capabilities nestor cannot serve left out of the chain.
//!
//! nestor owns the chain (every capability ID and next pointer is served from here and
//! never written to the device), so a guest write of garbage to a pointer changes nothing.

use crate::pci::CONFIG_SPACE_SIZE;

pub const CAPABILITY_POINTER: usize = 0x34;
pub const MSI_CAPABILITY_ID: u8 = 0x05;
pub const MSIX_CAPABILITY_ID: u8 = 0x11;
/// Capabilities live after the standard header.
const FIRST_CAPABILITY: usize = 0x40;
/// More entries than fit in the space means the chain loops.
const MAX_CAPABILITIES: usize = (CONFIG_SPACE_SIZE - FIRST_CAPABILITY) / 4;

/// One capability of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    pub offset: usize,
    /// Part of the chain the guest walks.
    pub exposed: bool,
}

/// Who answers for a byte of the capability area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityByte {
    /// A capability ID: read from the device, never written.
    Id,
    /// A next pointer, served from the emulated chain.
    Next(u8),
    /// Inside an exposed capability: forwarded to the device, unless the caller
    /// emulates that capability.
    Body { id: u8, offset: usize },
    /// Not part of any exposed capability: read from the device, writes dropped.
    Hidden,
}

#[derive(Debug, Clone, Default)]
pub struct CapabilityList {
    /// In the device's chain order.
    capabilities: Vec<Capability>,
}

impl CapabilityList {
    /// Walks the chain in `config` (the first 256 bytes of the device's configuration
    /// space); `expose` decides which capabilities the guest sees.
    pub fn walk(config: &[u8; CONFIG_SPACE_SIZE], expose: impl Fn(u8) -> bool) -> Self {
        let mut capabilities = Vec::new();
        let mut offset = usize::from(config[CAPABILITY_POINTER]) & !3;
        while offset >= FIRST_CAPABILITY && capabilities.len() < MAX_CAPABILITIES {
            if capabilities.iter().any(|c: &Capability| c.offset == offset) {
                log::warn!("the device's capability list loops at {offset:#x}; cut there");
                break;
            }
            let id = config[offset];
            capabilities.push(Capability {
                id,
                offset,
                exposed: expose(id),
            });
            offset = usize::from(config[offset + 1]) & !3;
        }
        Self { capabilities }
    }

    /// The first capability with `id` the guest sees.
    pub fn find(&self, id: u8) -> Option<usize> {
        self.exposed().find(|c| c.id == id).map(|c| c.offset)
    }

    /// Whether the device has a capability `id`, exposed or not.
    pub fn has(&self, id: u8) -> bool {
        self.capabilities.iter().any(|c| c.id == id)
    }

    fn exposed(&self) -> impl Iterator<Item = &Capability> {
        self.capabilities.iter().filter(|c| c.exposed)
    }

    /// The capability pointer the guest reads (0: no list).
    pub fn first(&self) -> u8 {
        self.exposed().next().map_or(0, |c| c.offset as u8)
    }

    /// Whether the header should advertise a capability list.
    pub fn any_exposed(&self) -> bool {
        self.exposed().next().is_some()
    }

    /// Who answers for byte `offset` of configuration space (at or above 0x40).
    pub fn classify(&self, offset: usize) -> CapabilityByte {
        // A capability runs until the next one in address order: the device gives no
        // lengths, and this is the most any capability can own.
        let owner = self
            .capabilities
            .iter()
            .filter(|c| c.offset <= offset)
            .max_by_key(|c| c.offset);
        let Some(owner) = owner.filter(|c| c.exposed) else {
            return CapabilityByte::Hidden;
        };
        match offset - owner.offset {
            0 => CapabilityByte::Id,
            1 => {
                let mut chain = self.exposed().skip_while(|c| c.offset != owner.offset);
                chain.next();
                CapabilityByte::Next(chain.next().map_or(0, |c| c.offset as u8))
            }
            _ => CapabilityByte::Body {
                id: owner.id,
                offset: owner.offset,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(chain: &[(usize, u8, u8)]) -> [u8; CONFIG_SPACE_SIZE] {
        let mut config = [0u8; CONFIG_SPACE_SIZE];
        config[CAPABILITY_POINTER] = chain.first().map_or(0, |c| c.0 as u8);
        for &(offset, id, next) in chain {
            config[offset] = id;
            config[offset + 1] = next;
        }
        config
    }

    #[test]
    fn hidden_capabilities_leave_the_chain() {
        let config = space(&[(0x40, 0x01, 0x50), (0x50, 0x05, 0x70), (0x70, 0x11, 0)]);
        let list = CapabilityList::walk(&config, |id| id != MSI_CAPABILITY_ID);
        assert_eq!(list.first(), 0x40);
        assert_eq!(list.classify(0x41), CapabilityByte::Next(0x70));
        assert_eq!(list.classify(0x71), CapabilityByte::Next(0));
        assert_eq!(list.classify(0x40), CapabilityByte::Id);
        assert_eq!(list.classify(0x54), CapabilityByte::Hidden);
        assert_eq!(
            list.classify(0x72),
            CapabilityByte::Body {
                id: 0x11,
                offset: 0x70
            }
        );
        assert_eq!(list.find(MSIX_CAPABILITY_ID), Some(0x70));
        assert_eq!(list.find(MSI_CAPABILITY_ID), None);
        assert!(list.has(MSI_CAPABILITY_ID));
    }

    #[test]
    fn loops_and_empty_lists_end_the_walk() {
        let looped = space(&[(0x40, 0x01, 0x48), (0x48, 0x10, 0x40)]);
        let list = CapabilityList::walk(&looped, |_| true);
        assert_eq!(list.capabilities.len(), 2);
        let none = CapabilityList::walk(&space(&[]), |_| true);
        assert_eq!(none.first(), 0);
        assert!(!none.any_exposed());
        assert_eq!(none.classify(0x80), CapabilityByte::Hidden);
    }
}
