//! What nestor prints when the guest crashes: every vCPU's registers and last exits after
//! the `guest failed` line, and with -v the interrupt routes and MSI-X tables.

mod common;

use common::*;

/// The lines nestor printed on stderr after `nestor: guest failed:`.
fn report_after_failure(output: &std::process::Output) -> Vec<String> {
    let err = stderr(output);
    let lines: Vec<String> = err.lines().map(str::to_string).collect();
    let failed = lines
        .iter()
        .position(|l| l.starts_with("nestor: guest failed:"))
        .unwrap_or_else(|| panic!("no 'guest failed' line:\n{err}"));
    lines[failed + 1..].to_vec()
}

fn lines_starting(report: &[String], prefix: &str) -> Vec<String> {
    report
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

fn assert_state_line(report: &[String], cpu: u8) {
    let state = lines_starting(report, &format!("nestor: vcpu{cpu} state: "));
    assert_eq!(state.len(), 1, "vcpu{cpu}: {report:#?}");
    for register in [
        "rip=",
        "rsp=",
        "rflags=",
        "cr0=",
        "cr3=",
        "cr4=",
        "efer=",
        "cs=",
        "idt=",
        "mp_state=",
    ] {
        assert!(state[0].contains(register), "no {register}: {}", state[0]);
    }
    assert_eq!(
        lines_starting(report, &format!("nestor: vcpu{cpu} regs: ")).len(),
        1,
        "vcpu{cpu}: {report:#?}"
    );
}

#[test]
fn a_triple_fault_reports_every_vcpu_and_the_last_exits() {
    if !kvm_available("a_triple_fault_reports_every_vcpu_and_the_last_exits") {
        return;
    }
    let output = run(&["--cpus", "2", "--cmdline", "probe=boot,triple-fault"]);
    assert_status(&output, 1);
    assert!(
        stderr(&output).contains("vcpu0 triple-faulted"),
        "{}",
        stderr(&output)
    );
    let report = report_after_failure(&output);
    assert!(
        report[0].starts_with("nestor: guest state when the VM ended"),
        "{report:#?}"
    );
    assert_state_line(&report, 0);
    assert_state_line(&report, 1);

    let exits = lines_starting(&report, "nestor: vcpu0 exit ");
    assert!(
        (2..=8).contains(&exits.len()),
        "without -v at most 8 exits: {report:#?}"
    );
    assert!(exits.last().unwrap().ends_with(" shutdown"), "{report:#?}");
    // The probe's last words before the crash: a newline on COM1.
    assert!(
        exits
            .iter()
            .any(|e| e.ends_with("io-out port=0x3f8 size=1 data=[0x0a]")),
        "{report:#?}"
    );
    assert!(
        !lines_starting(&report, "nestor: vcpu1 exit ").is_empty(),
        "{report:#?}"
    );
    assert!(
        lines_starting(&report, "nestor: msi").is_empty(),
        "interrupt routes only with -v: {report:#?}"
    );
}

/// The `pci` probe enables the rng's MSI-X and writes 0x4321 to vector 0's data: KVM gets
/// a route for it, which stays after the probe disables MSI-X again.
#[test]
fn with_verbose_the_report_shows_more_exits_and_the_interrupt_tables() {
    if !kvm_available("with_verbose_the_report_shows_more_exits_and_the_interrupt_tables") {
        return;
    }
    let mut command = nestor();
    command.args(["-v", "run", "--rng", "--timeout", "120"]);
    command.args(["--cmdline", "probe=pci,triple-fault"]);
    let output = command.output().expect("cannot start nestor");
    assert_status(&output, 1);
    let report = report_after_failure(&output);
    assert_state_line(&report, 0);
    let exits = lines_starting(&report, "nestor: vcpu0 exit ");
    assert!(
        (9..=32).contains(&exits.len()),
        "with -v up to 32 exits: {report:#?}"
    );
    let routes = lines_starting(&report, "nestor: msi route gsi=");
    assert!(
        routes.iter().any(|r| r.contains(" data=0x4321 ")
            && r.contains(" vector=0x21 ")
            && r.contains(" delivery=reserved(0b011) ")
            && r.contains(" trigger=edge")),
        "{report:#?}"
    );
    let msix = lines_starting(&report, "nestor: msix 00:01.0 virtio-rng");
    assert_eq!(
        msix.len(),
        3,
        "the function and its two vectors: {report:#?}"
    );
    assert!(
        msix[0].contains("enabled=false function-masked=false"),
        "{msix:#?}"
    );
    assert!(
        msix[1].contains("vector 0: address=0x0 data=0x4321 ") && msix[1].contains("masked=true"),
        "{msix:#?}"
    );
}

#[test]
fn a_guest_that_exits_with_an_error_gets_no_crash_report() {
    if !kvm_available("a_guest_that_exits_with_an_error_gets_no_crash_report") {
        return;
    }
    let output = run(&["--cmdline", "probe=no-such-scenario"]);
    assert_status(&output, 1);
    assert!(
        !stderr(&output).contains("vcpu0 state"),
        "{}",
        stderr(&output)
    );
}
