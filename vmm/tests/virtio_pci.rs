//! PCI and the virtio devices end to end: the bundled unikernel's `pci`, `virtio-blk` and
//! `virtio-rng` probes (resources/unikernel/src/probes/) against real devices on /dev/kvm.

mod common;

use common::*;

const DISK_BYTES: usize = 16 << 20;
/// The probe's default sector (blk_sector=1) and its pattern: byte i is i * 13 + 0x21.
const SECTOR: usize = 1;

fn pattern() -> Vec<u8> {
    (0..512)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(0x21))
        .collect()
}

fn run_probes(disk: &str) -> std::process::Output {
    run(&[
        "--disk",
        disk,
        "--rng",
        "--cmdline",
        "probe=pci,virtio-blk,virtio-rng",
    ])
}

fn assert_all_passed(output: &std::process::Output) {
    let lines = probe_lines(output);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("PROBE done passed=3 failed=0"),
        "{lines:?}\n{}",
        stderr(output)
    );
    assert_status(output, 0);
}

#[test]
fn probes_write_the_disk_and_read_random_bytes() {
    if !kvm_available("probes_write_the_disk_and_read_random_bytes") {
        return;
    }
    let dir = TempDir::new("virtio-pci");
    let image = dir.file("disk.img", &vec![0u8; DISK_BYTES]);
    let output = run_probes(&format!("path={}", image.display()));
    assert_all_passed(&output);
    assert!(stdout(&output).contains("virtio-blk: wrote sector 1"));
    let bytes = std::fs::read(&image).unwrap();
    assert_eq!(&bytes[SECTOR * 512..(SECTOR + 1) * 512], &pattern()[..]);
    assert!(bytes[..SECTOR * 512].iter().all(|&b| b == 0));
    assert!(bytes[(SECTOR + 1) * 512..].iter().all(|&b| b == 0));
}

#[test]
fn read_only_disk_refuses_the_write() {
    if !kvm_available("read_only_disk_refuses_the_write") {
        return;
    }
    let dir = TempDir::new("virtio-pci-ro");
    let image = dir.file("disk.img", &vec![0u8; DISK_BYTES]);
    let output = run_probes(&format!("path={},readonly=on", image.display()));
    assert_all_passed(&output);
    assert!(stdout(&output).contains("virtio-blk: refused sector 1"));
    let bytes = std::fs::read(&image).unwrap();
    assert!(bytes.iter().all(|&b| b == 0), "the read-only image changed");
}

#[test]
fn devices_get_stable_numbers_in_command_line_order() {
    if !kvm_available("devices_get_stable_numbers_in_command_line_order") {
        return;
    }
    let dir = TempDir::new("virtio-pci-order");
    let a = dir.file("a.img", &[0u8; 4096]);
    let b = dir.file("b.img", &[0u8; 4096]);
    let output = run(&[
        "--disk",
        &format!("path={}", a.display()),
        "--disk",
        &format!("path={},readonly=on", b.display()),
        "--rng",
    ]);
    assert_status(&output, 0);
    let tour = stdout(&output);
    for line in [
        "00:01.0 1af4:1042",
        "00:02.0 1af4:1042",
        "00:03.0 1af4:1044",
    ] {
        assert!(tour.contains(line), "{line} missing from\n{tour}");
    }
}

#[test]
fn bad_device_options_are_usage_errors() {
    assert_usage_error(&run(&["--disk", "readonly=on"]), "path");
    assert_usage_error(&run(&["--disk", "path=x,readonly=perhaps"]), "perhaps");
    assert_usage_error(&run(&["--rng", "iommu=maybe"]), "maybe");
    assert_usage_error(&run(&["--disk", "path=/nonexistent/disk.img"]), "disk.img");
}
