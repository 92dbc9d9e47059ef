//! How a nestor guest starts on x86_64.
//!
//! [`layout`] fixes where things live in guest-physical memory, [`boot`] loads a kernel and
//! writes the structures its boot protocol expects, [`cpu`] puts each vCPU in the state that
//! protocol requires, and [`acpi`] builds the tables a guest uses to find CPUs, devices and
//! how to power off. See `docs/guest-contract.md` for the guest's view.

pub mod acpi;
pub mod boot;
pub mod cpu;
pub mod layout;
pub mod memory_map;
