//! A writable disk image belongs to one disk of one nestor at a time; a read-only one may be
//! shared with other readers only.

mod common;

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use common::*;

/// Takes an OFD lock on `file` the way another nestor would; panics if it is held.
fn lock(file: &std::fs::File, kind: libc::c_int) {
    let request = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: a valid descriptor and a flock that outlives the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &request) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn the_same_writable_image_twice_is_refused() {
    if !kvm_available("the_same_writable_image_twice_is_refused") {
        return;
    }
    let dir = TempDir::new("disk-twice");
    let image = dir.file("twice.img", &[0u8; 4096]);
    let writable = format!("path={}", image.display());
    let read_only = format!("{writable},readonly=on");
    assert_usage_error(
        &run(&["--disk", &writable, "--disk", &writable]),
        "twice.img",
    );
    assert_usage_error(
        &run(&["--disk", &read_only, "--disk", &writable]),
        "twice.img",
    );
    assert_status(&run(&["--disk", &read_only, "--disk", &read_only]), 0);
}

#[test]
fn an_image_another_process_holds_is_refused() {
    if !kvm_available("an_image_another_process_holds_is_refused") {
        return;
    }
    let dir = TempDir::new("disk-held");
    let image = dir.file("held.img", &[0u8; 4096]);
    let writable = format!("path={}", image.display());
    let read_only = format!("{writable},readonly=on");

    let reader = OpenOptions::new().read(true).open(&image).unwrap();
    lock(&reader, libc::F_RDLCK);
    assert_usage_error(&run(&["--disk", &writable]), "held.img");
    assert_status(&run(&["--disk", &read_only]), 0);
    drop(reader);

    let writer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    lock(&writer, libc::F_WRLCK);
    assert_usage_error(&run(&["--disk", &read_only]), "held.img");
    drop(writer);
    assert_status(&run(&["--disk", &writable]), 0);
}
