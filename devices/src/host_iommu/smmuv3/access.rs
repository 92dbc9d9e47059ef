//! What a transaction wants to do, and which of those a translation permits.

use vm_memory::Permissions;

/// The kind of one access: read or write, privileged or not, data or instruction fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access {
    pub write: bool,
    pub privileged: bool,
    pub instruction: bool,
}

impl Access {
    /// An unprivileged data read, what a DMA read is.
    pub const READ: Self = Self {
        write: false,
        privileged: false,
        instruction: false,
    };
    /// An unprivileged data write.
    pub const WRITE: Self = Self {
        write: true,
        privileged: false,
        instruction: false,
    };

    #[inline]
    fn bit(self) -> u8 {
        1 << (u8::from(self.write)
            | u8::from(self.privileged) << 1
            | u8::from(self.instruction) << 2)
    }

    /// All eight kinds.
    pub fn all() -> impl Iterator<Item = Self> {
        (0u8..8).map(|i| Self {
            write: i & 1 != 0,
            privileged: i & 2 != 0,
            instruction: i & 4 != 0,
        })
    }

    /// The unprivileged data access for vm-memory permissions (read for `ReadWrite`).
    pub fn from_permissions(access: Permissions) -> Self {
        if access.has_write() {
            Self::WRITE
        } else {
            Self::READ
        }
    }
}

/// The set of access kinds a translation permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllowedAccesses(pub u8);

impl AllowedAccesses {
    pub const ALL: Self = Self(0xff);

    pub fn from_fn(mut permits: impl FnMut(Access) -> bool) -> Self {
        Self(
            Access::all()
                .filter(|&a| permits(a))
                .fold(0, |m, a| m | a.bit()),
        )
    }

    #[inline]
    pub fn permits(self, access: Access) -> bool {
        self.0 & access.bit() != 0
    }

    pub fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// What unprivileged data accesses (DMA) may do, as vm-memory permissions.
    pub fn dma_permissions(self) -> Permissions {
        match (self.permits(Access::READ), self.permits(Access::WRITE)) {
            (true, true) => Permissions::ReadWrite,
            (true, false) => Permissions::Read,
            (false, true) => Permissions::Write,
            (false, false) => Permissions::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_bits() {
        let all = AllowedAccesses::from_fn(|_| true);
        assert_eq!(all, AllowedAccesses::ALL);
        let reads = AllowedAccesses::from_fn(|a| !a.write);
        assert!(reads.permits(Access::READ) && !reads.permits(Access::WRITE));
        assert_eq!(reads.dma_permissions(), Permissions::Read);
        assert_eq!(
            reads.intersect(AllowedAccesses(0)).dma_permissions(),
            Permissions::No
        );
        assert_eq!(
            Access::from_permissions(Permissions::ReadWrite),
            Access::WRITE
        );
    }
}
