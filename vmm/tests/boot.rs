//! Booting the bundled unikernel on /dev/kvm.

mod common;

use common::*;

#[test]
fn bundled_unikernel_prints_its_banner_and_powers_off() {
    if !kvm_available("bundled_unikernel_prints_its_banner_and_powers_off") {
        return;
    }
    let output = run(&[]);
    assert_status(&output, 0);
    assert!(
        stdout(&output).contains("nestor unikernel"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn probe_boot_sees_every_cpu_and_the_memory_asked_for() {
    if !kvm_available("probe_boot_sees_every_cpu_and_the_memory_asked_for") {
        return;
    }
    let output = run(&["--cmdline", "probe=boot", "--cpus", "2", "--memory", "128M"]);
    assert_status(&output, 0);
    let lines = probe_lines(&output);
    assert!(lines.contains(&"PROBE boot ok".to_string()), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "PROBE done passed=1 failed=0");
}

#[test]
fn probe_exit_cost_times_both_kinds_of_exit() {
    if !kvm_available("probe_exit_cost_times_both_kinds_of_exit") {
        return;
    }
    let output = run(&["--cmdline", "probe=exit-cost:20"]);
    assert_status(&output, 0);
    let out = stdout(&output);
    for kind in ["pio", "mmio"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("exit-cost: kind={kind} rounds=20 ")))
            .unwrap_or_else(|| panic!("no {kind} timing in {out}"));
        let median: u64 = line
            .split(' ')
            .find_map(|w| w.strip_prefix("median_ns="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no median in {line}"));
        // An exit is a round trip through KVM and nestor: never free, and on this
        // machine's slowest /dev/kvm well under a second.
        assert!((1..1_000_000_000).contains(&median), "{line}");
    }
    assert!(out.contains("PROBE done passed=1 failed=0"), "{out}");
}

#[test]
fn a_failing_probe_makes_nestor_exit_non_zero() {
    if !kvm_available("a_failing_probe_makes_nestor_exit_non_zero") {
        return;
    }
    let output = run(&["--cmdline", "probe=no-such-scenario"]);
    assert_status(&output, 1);
    let lines = probe_lines(&output);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("PROBE no-such-scenario FAIL")),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap(), "PROBE done passed=0 failed=1");
}

#[test]
fn serial_output_can_go_to_a_file() {
    if !kvm_available("serial_output_can_go_to_a_file") {
        return;
    }
    let dir = TempDir::new("serial-file");
    let log = dir.path().join("console.log");
    let output = run(&["--serial", &format!("file={}", log.display())]);
    assert_status(&output, 0);
    assert!(!stdout(&output).contains("nestor unikernel"));
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(console.contains("nestor unikernel"), "{console}");
}

#[test]
fn boot_timer_reports_the_first_guest_instruction() {
    if !kvm_available("boot_timer_reports_the_first_guest_instruction") {
        return;
    }
    let output = run(&["--boot-timer", "--serial", "off"]);
    assert_status(&output, 0);
    let err = stderr(&output);
    assert!(err.contains("nestor: first KVM_RUN at "), "{err}");
    assert!(err.contains("nestor: boot-timer code=0 at "), "{err}");
}

/// The trace's lines in the order printed, as (what, microseconds since start, since the
/// line before).
fn trace_lines(err: &str) -> Vec<(String, u64, u64)> {
    err.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("nestor: ")?;
            let (what, times) = rest.split_once(" at ")?;
            // nestor's steps end with the page faults in them.
            let times = times.split_once(" faults=").map_or(times, |(t, _)| t);
            let (at, delta) = times.strip_suffix(" us)")?.split_once(" us (+")?;
            Some((what.to_owned(), at.parse().ok()?, delta.parse().ok()?))
        })
        .collect()
}

#[test]
fn boot_timer_traces_every_step_of_the_start_and_the_end_in_time_order() {
    if !kvm_available("boot_timer_traces_every_step_of_the_start_and_the_end_in_time_order") {
        return;
    }
    let output = run(&["--boot-timer", "--serial", "off", "--cpus", "2"]);
    assert_status(&output, 0);
    let err = stderr(&output);
    let lines = trace_lines(&err);
    let position = |what: &str| {
        lines
            .iter()
            .position(|(w, _, _)| w == what)
            .unwrap_or_else(|| panic!("no '{what}' line in:\n{err}"))
    };
    // The VM is made while the command line is parsed; guest RAM goes in before the
    // interrupt controller; there is no PIT by default.
    let order = [
        "boot-timer step=vm",
        "boot-timer step=config",
        "boot-timer step=kvm",
        "boot-timer step=memory",
        "boot-timer step=irqchip",
        "boot-timer step=kernel",
        "boot-timer step=vcpus",
        "first KVM_RUN",
        "boot-timer code=0",
        "boot-timer step=vcpus-joined",
        "boot-timer step=vm-closed",
        "boot-timer step=exit",
    ];
    let positions: Vec<usize> = order.iter().map(|what| position(what)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{err}"
    );
    position("boot-timer step=vcpu0-left-guest");
    position("boot-timer step=vcpu1-left-guest");
    assert!(!err.contains("step=pit"), "{err}");
    // Every step of nestor's, from main's start to the end under the VMM thread's filter,
    // says how many page faults it took; the program's loading and the first touch of the
    // code that starts a thread and makes the VM take some.
    let step_faults: Vec<(&str, u64)> = err
        .lines()
        .filter(|l| l.starts_with("nestor: boot-timer step=") && !l.contains("-left-guest"))
        .map(|l| {
            let faults = l.split_once(" faults=").and_then(|(_, n)| n.parse().ok());
            (
                l,
                faults.unwrap_or_else(|| panic!("no fault count in '{l}':\n{err}")),
            )
        })
        .collect();
    assert!(step_faults[0].0.contains("step=main at 0 us"), "{err}");
    assert!(step_faults[0].1 > 0 && step_faults[1].1 > 0, "{err}");
    // Each line's time is the one before plus its delta.
    for pair in lines.windows(2) {
        assert_eq!(pair[0].1 + pair[1].2, pair[1].1, "{err}");
    }
}

#[test]
fn probes_pass_with_the_pit_too() {
    if !kvm_available("probes_pass_with_the_pit_too") {
        return;
    }
    let output = run(&[
        "--pit",
        "--boot-timer",
        "--cmdline",
        "probe=boot,pci",
        "--cpus",
        "2",
        "--memory",
        "128M",
    ]);
    assert_status(&output, 0);
    assert_eq!(
        probe_lines(&output).last().unwrap(),
        "PROBE done passed=2 failed=0"
    );
    let err = stderr(&output);
    let lines = trace_lines(&err);
    let at = |what: &str| lines.iter().position(|(w, _, _)| w == what);
    assert!(
        at("boot-timer step=irqchip") < at("boot-timer step=pit")
            && at("boot-timer step=pit").is_some(),
        "{err}"
    );
}

#[test]
fn a_guest_that_outlives_its_timeout_is_stopped_with_a_reason() {
    if !kvm_available("a_guest_that_outlives_its_timeout_is_stopped_with_a_reason") {
        return;
    }
    let output = run(&["--cmdline", "probe=hold:60000", "--timeout", "1"]);
    assert_status(&output, 1);
    assert!(stderr(&output).contains("--timeout"), "{}", stderr(&output));
}
