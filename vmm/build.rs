//! Build script for the vmm crate: builds the bundled unikernel guest
//! (`resources/unikernel`) and leaves its ELF at `$OUT_DIR/unikernel.elf` for
//! `src/unikernel.rs` to embed.
//!
//! The unikernel is a freestanding image that needs its own codegen and link flags, so it
//! is built by a nested cargo with its own target directory and a clean environment:
//! nothing from this build (RUSTFLAGS, a static or cross target, profile overrides) may
//! leak into it.
//!
//! It also compiles the seccomp policies to BPF (see `build/seccomp.rs`).

#[path = "build/seccomp.rs"]
mod seccomp;
#[path = "build/seccomp_dispatch.rs"]
mod seccomp_dispatch;

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    build_unikernel();
    seccomp::compile_filters(&env_path("CARGO_MANIFEST_DIR"), &env_path("OUT_DIR"));
}

/// The unikernel is always built for the host triple: it runs in a KVM guest on it.
const UNIKERNEL_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The binary target name in `resources/unikernel/Cargo.toml`.
const UNIKERNEL_BIN: &str = "nestor-unikernel";

fn env_path(key: &str) -> PathBuf {
    PathBuf::from(env::var_os(key).unwrap_or_else(|| panic!("{key} is not set")))
}

/// The flags that make a `no_std` host-target binary a static image at 1 MiB.
///
/// SSE is off: on hosts where KVM runs guests by instruction emulation, its emulator
/// rejects most SSE instructions (an `xorps` ends the VM with an emulation failure).
/// rustc warns that the x86_64 ABI wants SSE2; the image uses no floating point.
fn unikernel_rustflags(linker_script: &Path) -> String {
    [
        "-C".to_string(),
        "panic=abort".to_string(),
        "-C".to_string(),
        "relocation-model=static".to_string(),
        "-C".to_string(),
        "target-feature=-sse,-sse2".to_string(),
        "-C".to_string(),
        "link-arg=-nostartfiles".to_string(),
        "-C".to_string(),
        "link-arg=-static".to_string(),
        "-C".to_string(),
        "link-arg=-no-pie".to_string(),
        "-C".to_string(),
        format!("link-arg=-Wl,-T,{}", linker_script.display()),
    ]
    .join("\x1f")
}

/// Variables of the outer build that would change how the nested cargo builds.
fn leaks_into_nested_build(key: &OsString) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    matches!(
        key,
        "RUSTFLAGS" | "CARGO_ENCODED_RUSTFLAGS" | "RUSTC_WORKSPACE_WRAPPER"
    ) || key.starts_with("CARGO_TARGET_")
        || key.starts_with("CARGO_BUILD_")
        || key.starts_with("CARGO_PROFILE_")
}

fn build_unikernel() {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR");
    let out_dir = env_path("OUT_DIR");
    let crate_dir = manifest_dir.join("..").join("resources").join("unikernel");
    let crate_dir = crate_dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("unikernel sources at {}: {e}", crate_dir.display()));
    for input in ["Cargo.toml", "Cargo.lock", "linker.ld", "src"] {
        println!("cargo:rerun-if-changed={}", crate_dir.join(input).display());
    }

    let target_dir = out_dir.join("unikernel-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&crate_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--offline",
            "--bin",
            UNIKERNEL_BIN,
        ])
        .args(["--target", UNIKERNEL_TARGET])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for (key, _) in env::vars_os().filter(|(key, _)| leaks_into_nested_build(key)) {
        command.env_remove(key);
    }
    command.env(
        "CARGO_ENCODED_RUSTFLAGS",
        unikernel_rustflags(&crate_dir.join("linker.ld")),
    );

    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running cargo for the unikernel: {e}"));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!("building the unikernel failed ({})", output.status);
    }

    let elf = target_dir
        .join(UNIKERNEL_TARGET)
        .join("release")
        .join(UNIKERNEL_BIN);
    let dest = out_dir.join("unikernel.elf");
    fs::copy(&elf, &dest)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", elf.display(), dest.display()));
}
