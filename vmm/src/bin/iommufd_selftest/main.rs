//! `nestor-iommufd-selftest`: nestor's iommufd code against the real kernel, through the
//! kernel's iommufd test driver (CONFIG_IOMMUFD_TEST), which stands in for IOMMU hardware
//! that nests, reports page requests and events. Built for the nested rig; needs
//! /dev/iommu and the test driver.
//!
//! Prints `iommufd-selftest: NAME ok [figures]` or `iommufd-selftest: NAME FAIL why` per
//! check, and exits 0 only if every check passed (2 if the test driver is absent). Names
//! on the command line pick the checks.

mod fault_relay;
mod faults;
mod nested_lifecycle;
mod nested_vm;

type Check = Result<String, String>;
/// A named check.
type NamedCheck = (&'static str, fn() -> Check);

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

const CHECKS: [NamedCheck; 4] = [
    ("fault-queue", faults::fault_queue),
    ("fault-detach", faults::fault_detach),
    ("fault-relay", fault_relay::check),
    ("nested-lifecycle", nested_lifecycle::check),
];

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    if let Some(unknown) = only.iter().find(|o| !CHECKS.iter().any(|(n, _)| n == o)) {
        eprintln!("nestor-iommufd-selftest: no check named {unknown}");
        std::process::exit(2);
    }
    if !std::path::Path::new("/sys/bus/iommufd_mock").exists() {
        eprintln!(
            "nestor-iommufd-selftest: this kernel has no iommufd test driver (CONFIG_IOMMUFD_TEST); run it in the nested rig"
        );
        std::process::exit(2);
    }
    let mut failed = 0;
    for (name, check) in CHECKS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        match check() {
            Ok(detail) => println!("iommufd-selftest: {name} ok {detail}"),
            Err(why) => {
                failed += 1;
                println!("iommufd-selftest: {name} FAIL {why}");
            }
        }
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
