//! A reference model of the capability chain a passthrough function shows the guest: the
//! device's chain as PCI defines it (pointers with their low two bits ignored, ending at
//! any pointer below 0x40 or at the first repeated one), with the capabilities the host
//! cannot serve left out, and who owns each byte of the capability area.

pub const MSI_ID: u8 = 0x05;
pub const MSIX_ID: u8 = 0x11;
pub const MSIX_LEN: usize = 12;
const FIRST: usize = 0x40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub id: u8,
    pub offset: usize,
    pub exposed: bool,
}

/// Who answers for one byte at or above 0x40.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Not in an exposed capability (or an ID byte): the device's, writes dropped.
    Device,
    /// A next pointer: the exposed chain's.
    Next(u8),
    /// Byte `rel` of exposed capability `cap`.
    Body { cap: Cap, rel: usize },
}

pub struct ChainModel {
    /// In chain order.
    pub caps: Vec<Cap>,
}

impl ChainModel {
    /// The chain of `config`; MSI-X is shown when the host gives it vectors and the device's
    /// first MSI-X capability fits in configuration space, MSI only when MSI-X is not shown
    /// and the host gives it vectors.
    pub fn new(config: &[u8; 256], host_msix: bool, host_msi: bool) -> Self {
        let mut offsets = Vec::new();
        let mut at = usize::from(config[0x34]) & !3;
        while at >= FIRST && !offsets.contains(&at) {
            offsets.push(at);
            at = usize::from(config[at + 1]) & !3;
        }
        let first_msix = offsets.iter().find(|&&o| config[o] == MSIX_ID).copied();
        let msix_shown = host_msix && first_msix.is_some_and(|o| o + MSIX_LEN <= 256);
        let caps = offsets
            .into_iter()
            .map(|offset| {
                let id = config[offset];
                let exposed = match id {
                    MSIX_ID => msix_shown,
                    MSI_ID => host_msi && !msix_shown,
                    _ => true,
                };
                Cap {
                    id,
                    offset,
                    exposed,
                }
            })
            .collect();
        Self { caps }
    }

    fn exposed(&self) -> impl Iterator<Item = &Cap> {
        self.caps.iter().filter(|c| c.exposed)
    }

    pub fn first_exposed(&self, id: u8) -> Option<usize> {
        self.exposed().find(|c| c.id == id).map(|c| c.offset)
    }

    pub fn pointer(&self) -> u8 {
        self.exposed().next().map_or(0, |c| c.offset as u8)
    }

    pub fn any_exposed(&self) -> bool {
        self.exposed().next().is_some()
    }

    /// A capability owns the bytes up to the next capability's start in address order
    /// (the device gives no lengths).
    pub fn owner(&self, at: usize) -> Owner {
        let Some(cap) = self
            .caps
            .iter()
            .filter(|c| c.offset <= at)
            .max_by_key(|c| c.offset)
            .filter(|c| c.exposed)
        else {
            return Owner::Device;
        };
        match at - cap.offset {
            0 => Owner::Device,
            1 => {
                let exposed: Vec<&Cap> = self.exposed().collect();
                let here = exposed.iter().position(|c| c.offset == cap.offset).unwrap();
                Owner::Next(exposed.get(here + 1).map_or(0, |c| c.offset as u8))
            }
            rel => Owner::Body { cap: *cap, rel },
        }
    }
}
