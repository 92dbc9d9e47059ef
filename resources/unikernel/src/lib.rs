//! Hardware-independent parts of the nestor unikernel guest.
//!
//! Everything here is plain logic over bytes and numbers so it can be unit tested on the
//! host; the guest binary (`main.rs`) adds the hardware access around it.

#![cfg_attr(not(test), no_std)]

pub mod aml;
pub mod cmdline;
pub mod le;
pub mod memmap;
pub mod smmu_tables;
pub mod stats;
pub mod text;
