//! Running the real `nestor` binary from integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn nestor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nestor"))
}

/// True when /dev/kvm can be opened. Without it the caller skips, saying why on stderr;
/// with NESTOR_REQUIRE_KVM=1 (set by CI) a missing /dev/kvm fails the test instead.
pub fn kvm_available(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            if std::env::var_os("NESTOR_REQUIRE_KVM").is_some_and(|v| v == "1") {
                panic!("{test}: /dev/kvm is required here but cannot be opened: {e}");
            }
            eprintln!("SKIP {test}: /dev/kvm cannot be opened ({e}); this test boots a guest");
            false
        }
    }
}

/// Runs nestor with `args`, bounded by a generous timeout so a hang fails the test.
pub fn run(args: &[&str]) -> Output {
    let mut command = nestor();
    command.arg("run").args(args);
    if !args.contains(&"--timeout") {
        command.args(["--timeout", "120"]);
    }
    command.output().expect("cannot start nestor")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The PROBE lines of a run, trimmed.
pub fn probe_lines(output: &Output) -> Vec<String> {
    stdout(output)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| l.starts_with("PROBE "))
        .collect()
}

/// Asserts a run ended with `status`, printing both streams if not.
pub fn assert_status(output: &Output, status: i32) {
    assert_eq!(
        output.status.code(),
        Some(status),
        "nestor exited with {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// Asserts a usage error: exit 2, exactly one line on stderr, no panic.
pub fn assert_usage_error(output: &Output, mentions: &str) {
    assert_status(output, 2);
    let err = stderr(output);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(mentions), "expected '{mentions}' in: {err}");
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nestor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts that each of `probes` passed, that nothing failed, and that nestor exited 0.
pub fn assert_probes_passed(output: &Output, probes: &[&str]) {
    let lines = probe_lines(output);
    for probe in probes {
        assert!(
            lines.contains(&format!("PROBE {probe} ok")),
            "{lines:?}\n{}",
            stderr(output)
        );
    }
    assert_eq!(
        lines.last().map(String::as_str),
        Some(format!("PROBE done passed={} failed=0", probes.len()).as_str()),
        "{}",
        stderr(output)
    );
    assert_status(output, 0);
}
