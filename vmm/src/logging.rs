//! A minimal `log` backend on stderr: warnings by default, more with -v.
//!
//! Guests can make devices log (a corrupt ring, a faulting DMA), so output is rate-limited,
//! and virtio-queue's messages, which are all about what the guest put in its rings, count as
//! info rather than errors. So do vfio-ioctls' warnings: a passthrough region access the
//! guest made that the host refused, or the crate probing an interrupt kind the device
//! lacks, on every start; nestor reports what a failed VFIO call means itself.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Metadata, Record};

/// At most this many lines per window; the rest are counted and reported once.
const LINES_PER_WINDOW: u32 = 20;
const WINDOW: Duration = Duration::from_secs(1);
const GUEST_DRIVEN_TARGETS: &[&str] = &["virtio_queue", "vfio_ioctls"];

struct RateLimit {
    window_start: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl RateLimit {
    /// Whether a line may be printed now, and how many were dropped before it.
    fn admit(&mut self, now: Instant) -> (bool, u64) {
        let window_over = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= WINDOW);
        if window_over {
            self.window_start = Some(now);
            self.lines = 0;
        }
        if self.lines >= LINES_PER_WINDOW {
            self.suppressed += 1;
            return (false, 0);
        }
        self.lines += 1;
        (true, std::mem::take(&mut self.suppressed))
    }
}

struct StderrLogger {
    limit: Mutex<RateLimit>,
}

fn effective_level(record: &Metadata) -> Level {
    let guest_driven = GUEST_DRIVEN_TARGETS
        .iter()
        .any(|t| record.target().starts_with(t));
    if guest_driven {
        record.level().max(Level::Info)
    } else {
        record.level()
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        effective_level(metadata) <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (admitted, suppressed) = self.limit.lock().unwrap().admit(Instant::now());
        if !admitted {
            return;
        }
        if suppressed > 0 {
            stderr_line(format_args!(
                "nestor: warning: {suppressed} log lines suppressed"
            ));
        }
        let level = match effective_level(record.metadata()) {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        stderr_line(format_args!("nestor: {level}: {}", record.args()));
    }

    fn flush(&self) {}
}

/// Writes one line to stderr. A closed or full stderr (`nestor ... 2>&1 | head`) loses the
/// line instead of panicking, as `eprintln!` would: nestor's messages are never worth
/// its life.
pub fn stderr_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

static LOGGER: StderrLogger = StderrLogger {
    limit: Mutex::new(RateLimit {
        window_start: None,
        lines: 0,
        suppressed: 0,
    }),
};

/// `verbosity` counts -v flags: 0 warnings, 1 info, 2 debug, 3+ trace.
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Whether -v was given: reports print their details then.
pub fn verbose() -> bool {
    log::max_level() >= LevelFilter::Info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_and_counted() {
        let mut limit = RateLimit {
            window_start: None,
            lines: 0,
            suppressed: 0,
        };
        let t0 = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(limit.admit(t0), (true, 0));
        }
        assert_eq!(limit.admit(t0), (false, 0));
        assert_eq!(limit.admit(t0), (false, 0));
        assert_eq!(limit.admit(t0 + WINDOW), (true, 2));
    }

    #[test]
    fn virtio_queue_errors_are_guest_driven() {
        let record = Metadata::builder()
            .level(Level::Error)
            .target("virtio_queue::queue")
            .build();
        assert_eq!(effective_level(&record), Level::Info);
        let vfio = Metadata::builder()
            .level(Level::Warn)
            .target("vfio_ioctls::vfio_device")
            .build();
        assert_eq!(effective_level(&vfio), Level::Info);
        let ours = Metadata::builder()
            .level(Level::Error)
            .target("vmm")
            .build();
        assert_eq!(effective_level(&ours), Level::Error);
    }
}
