//! The binary search the build puts in front of seccompiler's filters
//! (`vmm/build/seccomp_dispatch.rs`): it gives every syscall the verdict seccompiler's own
//! program gives, and the check the build runs on it catches a dispatch that does not.

#[path = "../build/seccomp_dispatch.rs"]
mod seccomp_dispatch;

use std::path::PathBuf;

use seccomp_dispatch::{check_same_verdicts, with_dispatch};
use seccompiler::{sock_filter, TargetArch};

const JEQ_K: u16 = 0x15;

/// Every policy, compiled by seccompiler as the build compiles it.
fn chained_programs() -> Vec<(String, Vec<sock_filter>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../resources/seccomp");
    let mut programs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let json = std::fs::read(&path).unwrap();
        let mut compiled = seccompiler::compile_from_json(&json[..], TargetArch::x86_64).unwrap();
        programs.push((name.clone(), compiled.remove(&name).unwrap()));
    }
    assert!(programs.len() >= 6, "policies in {}", dir.display());
    programs
}

#[test]
fn every_policy_keeps_its_verdicts_behind_the_dispatch() {
    for (name, chained) in chained_programs() {
        let dispatched = with_dispatch(&chained);
        assert!(dispatched.len() > chained.len(), "{name}");
        // The blocks come after the dispatch, unchanged.
        assert!(
            dispatched.ends_with(&chained[4..]),
            "{name}: seccompiler's blocks moved or changed"
        );
        check_same_verdicts(&chained, &dispatched);
    }
}

#[test]
#[should_panic(expected = "syscall")]
fn the_check_catches_a_dispatch_that_sends_a_syscall_elsewhere() {
    let (_, chained) = chained_programs()
        .into_iter()
        .find(|(name, _)| name == "vcpu")
        .unwrap();
    let mut dispatched = with_dispatch(&chained);
    // Right after the header, the dispatch's first comparison against a syscall number at a
    // leaf: make it compare against a number no policy allows.
    let leaf = dispatched[4..]
        .iter()
        .position(|i| i.code == JEQ_K)
        .unwrap();
    dispatched[4 + leaf].k = 1000;
    check_same_verdicts(&chained, &dispatched);
}
