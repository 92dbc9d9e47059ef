//! Host unit tests of the bundled unikernel's hardware-independent logic: cmdline parsing,
//! number printing and memory-map sums. The unikernel is a separate freestanding crate
//! outside the workspace, so its modules (and their `#[cfg(test)]` tests) are compiled in
//! here to run with `cargo test --workspace`.

#![allow(dead_code)]

#[path = "../../resources/unikernel/src/cmdline.rs"]
mod cmdline;
#[path = "../../resources/unikernel/src/memmap.rs"]
mod memmap;
#[path = "../../resources/unikernel/src/text.rs"]
mod text;
