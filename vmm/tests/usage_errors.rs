//! User mistakes: one line on stderr, exit 2, no panic, before any guest runs.

mod common;

use common::*;

#[test]
fn missing_kernel_file() {
    let output = run(&["--kernel", "/nonexistent/bzImage"]);
    assert_usage_error(&output, "/nonexistent/bzImage");
}

#[test]
fn text_file_as_kernel() {
    let dir = TempDir::new("text-kernel");
    let kernel = dir.file("kernel.txt", b"this is not a kernel\n");
    let output = run(&["--kernel", kernel.to_str().unwrap()]);
    assert_usage_error(&output, "neither a Linux bzImage nor an ELF");
}

#[test]
fn empty_file_as_kernel() {
    let dir = TempDir::new("empty-kernel");
    let kernel = dir.file("empty", b"");
    let output = run(&["--kernel", kernel.to_str().unwrap()]);
    assert_usage_error(&output, "neither a Linux bzImage nor an ELF");
}

#[test]
fn directory_as_kernel() {
    let dir = TempDir::new("dir-kernel");
    let output = run(&["--kernel", dir.path().to_str().unwrap()]);
    assert_usage_error(&output, "is a directory");
}

#[test]
fn elf_without_a_pvh_note() {
    // nestor itself is an ELF with no PVH entry.
    let output = run(&["--kernel", env!("CARGO_BIN_EXE_nestor")]);
    assert_usage_error(&output, "no PVH entry note");
}

#[test]
fn missing_initrd() {
    let output = run(&["--initrd", "/nonexistent/initrd"]);
    assert_usage_error(&output, "initrd");
}

#[test]
fn initrd_that_does_not_fit_beside_the_kernel() {
    if !kvm_available("initrd_that_does_not_fit_beside_the_kernel") {
        return;
    }
    let dir = TempDir::new("big-initrd");
    let initrd = dir.file("initrd", &vec![0u8; 15 << 20]);
    let output = run(&["--memory", "16M", "--initrd", initrd.to_str().unwrap()]);
    assert_usage_error(&output, "initrd");
}

#[test]
fn memory_too_small_too_large_and_malformed() {
    assert_usage_error(&run(&["--memory", "1M"]), "too small");
    assert_usage_error(&run(&["--memory", "64T"]), "more than this host has");
    assert_usage_error(&run(&["--memory", "lots"]), "--memory");
}

#[test]
fn memory_not_in_whole_pages() {
    assert_usage_error(&run(&["--memory", "16385K"]), "4 KiB");
    assert_usage_error(&run(&["--memory", "33554433K"]), "4 KiB");
}

#[test]
fn cpu_count_out_of_range() {
    assert_usage_error(&run(&["--cpus", "0"]), "--cpus");
    assert_usage_error(&run(&["--cpus", "100000"]), "--cpus");
}

#[test]
fn bad_serial_mode() {
    assert_usage_error(&run(&["--serial", "tcp:1234"]), "--serial");
}

#[test]
fn bad_page_response_timeout() {
    for bad in ["0", "600001", "5s"] {
        let option = format!("page-response-timeout={bad}");
        assert_usage_error(&run(&["--viommu", &option]), "page-response-timeout");
    }
}

#[test]
fn pit_takes_no_value() {
    assert_usage_error(&run(&["--pit=on"]), "--pit");
}

#[test]
fn unknown_flag() {
    let output = nestor().args(["run", "--frobnicate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!stderr(&output).contains("panicked"));
}

#[test]
fn vfio_device_that_does_not_exist() {
    let output = run(&["--vfio", "path=/nonexistent/0000:99:00.0"]);
    assert_usage_error(&output, "no such device");
}

#[test]
fn vfio_device_not_bound_to_vfio_pci() {
    // A directory with no driver link: a device bound to nothing.
    let dir = TempDir::new("vfio-unbound");
    let output = run(&["--vfio", &format!("path={}", dir.path().display())]);
    assert_usage_error(&output, "bind it to vfio-pci");
}

#[test]
fn vfio_option_mistakes() {
    assert_usage_error(&run(&["--vfio", "iommu=on"]), "path=");
    assert_usage_error(&run(&["--vfio", "path=x,backend=type1"]), "iommufd");
}

#[test]
fn vfio_is_in_the_help() {
    let output = nestor().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--vfio"), "{help}");
    assert!(help.contains("backend=container|iommufd"), "{help}");
}
