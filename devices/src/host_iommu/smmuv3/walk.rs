//! The VMSAv8-64 table walk shared by both stages: from a start table, one descriptor per
//! level, to a block or page. Each step goes one level down and level 3 always ends the
//! walk, so a guest's table that points at itself (or anywhere else) costs at most four
//! reads. What the leaf permits is for the stage to decide.

use super::granule::Granule;
use super::wire::descriptor::{Descriptor, TABLE_ATTRS};

/// The shape of one stage's walk for one input address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkParams {
    pub granule: Granule,
    /// Input address size in bits.
    pub input_bits: u32,
    pub start_level: u32,
    /// The start table (possibly several concatenated granules at stage 2).
    pub table: u64,
    /// Output address size in bits: table and output addresses beyond it are address
    /// size faults.
    pub output_bits: u32,
}

/// A walk's leaf: the block or page that maps the input address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    pub descriptor: Descriptor,
    pub level: u32,
    /// log2 of the block or page size.
    pub size_bits: u32,
    /// The output address of the input address.
    pub output: u64,
    /// The attribute bits \[63:59\] of every table descriptor on the way, ORed.
    pub table_attrs: u64,
    /// The table the leaf was read from.
    pub table: u64,
}

impl Leaf {
    /// APTable\[1\] was set above the leaf.
    pub fn table_read_only(&self) -> bool {
        Descriptor(self.table_attrs).ap_table_read_only()
    }
    pub fn table_no_unprivileged(&self) -> bool {
        Descriptor(self.table_attrs).ap_table_no_unprivileged()
    }
    pub fn table_xn(&self) -> bool {
        Descriptor(self.table_attrs).xn_table()
    }
    pub fn table_pxn(&self) -> bool {
        Descriptor(self.table_attrs).pxn_table()
    }
}

/// Why a walk did not reach a leaf; `E` is what a failed descriptor fetch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError<E> {
    /// An invalid or reserved descriptor.
    Translation { level: u32 },
    /// A table or output address beyond the output size.
    AddressSize { level: u32 },
    /// Fetching the descriptor at this address failed.
    Fetch { level: u32, address: u64, error: E },
}

#[inline]
fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Walks `params` for `input` (only its low `input_bits` are used: range checks are the
/// stage's), fetching each descriptor from its address with `fetch`.
pub fn walk<E>(
    params: &WalkParams,
    input: u64,
    fetch: &mut impl FnMut(u64) -> Result<u64, E>,
) -> Result<Leaf, WalkError<E>> {
    walk_from(params, params.start_level, params.table, input, fetch)
}

/// The rest of a walk from the table at `level` (a walk cache remembered it; below the
/// start level, so no table attributes are lost: stage 2 has none).
pub fn walk_from<E>(
    params: &WalkParams,
    level: u32,
    table: u64,
    input: u64,
    fetch: &mut impl FnMut(u64) -> Result<u64, E>,
) -> Result<Leaf, WalkError<E>> {
    let granule = params.granule;
    let mut level = level.min(3);
    let mut table = table;
    let mut table_attrs = 0;
    loop {
        let shift = granule.level_shift(level);
        let index_bits = if level == params.start_level {
            params.input_bits.saturating_sub(shift)
        } else {
            granule.stride()
        };
        let index = (input >> shift) & mask(index_bits);
        let address = table.wrapping_add(index * 8);
        let descriptor = Descriptor(fetch(address).map_err(|error| WalkError::Fetch {
            level,
            address,
            error,
        })?);
        if !descriptor.valid() {
            return Err(WalkError::Translation { level });
        }
        let is_table = level < 3 && descriptor.table_or_page();
        // A page at level 3 needs bit 1; a block at 0-2 needs a level that has blocks.
        // A reserved encoding is a translation fault whatever address it holds.
        if !is_table {
            let leaf_ok = if level == 3 {
                descriptor.table_or_page()
            } else {
                granule.block_allowed(level)
            };
            if !leaf_ok {
                return Err(WalkError::Translation { level });
            }
        }
        let next = descriptor.address(granule.bits());
        if next >> params.output_bits != 0 {
            return Err(WalkError::AddressSize { level });
        }
        if is_table {
            table_attrs |= descriptor.0 & TABLE_ATTRS;
            table = next;
            level += 1;
            continue;
        }
        let base = next & !mask(shift);
        return Ok(Leaf {
            descriptor,
            level,
            size_bits: shift,
            output: base | (input & mask(shift)),
            table_attrs,
            table,
        });
    }
}
