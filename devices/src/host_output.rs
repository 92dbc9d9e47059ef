//! Output to a host file (nestor's stdout, a serial log) that never blocks whoever writes.
//!
//! The writers are guest-driven: a vCPU thread emulating the serial port, a virtio-console
//! worker. A host file may not drain (a pipe nobody reads, a stopped terminal), and a writer
//! blocked on it would stall the guest and keep nestor from ending. So a [`HostOutput`]
//! appends to a bounded buffer and returns at once; its own thread does the blocking
//! writes. What does not fit is dropped and counted.
//!
//! A thread rather than O_NONBLOCK on the fd: stdout is often a terminal whose open file
//! description the user's shell shares, so the flag would be seen, and left, outside nestor.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::pending_thread::PendingThread;

/// Bytes held for the host before more are dropped.
pub const DEFAULT_CAPACITY: usize = 64 << 10;
/// Dropped output is reported at most this often.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Bytes the writer thread took from `pending` and has not finished writing.
    in_flight: usize,
    /// The writer thread waits for `pending` to fill; a writer must wake it.
    writer_waiting: bool,
    dropped: u64,
    unreported_drops: u64,
    last_drop_report: Option<Instant>,
    /// The file failed; whatever comes after is discarded.
    failed: bool,
    /// Every handle is gone: the thread writes what is pending and ends.
    closed: bool,
}

impl State {
    fn is_written(&self) -> bool {
        self.failed || (self.pending.is_empty() && self.in_flight == 0)
    }

    /// The drops to report now, if any and if the last report is old enough.
    fn take_drop_report(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last_drop_report
            .is_none_or(|last| now.duration_since(last) >= DROP_REPORT_INTERVAL);
        if self.unreported_drops == 0 || !due {
            return None;
        }
        self.last_drop_report = Some(now);
        Some(std::mem::take(&mut self.unreported_drops))
    }
}

struct Shared {
    name: String,
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the writer thread: output arrived, or the last handle went.
    work: Condvar,
    /// Wakes those waiting for everything to be written.
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, bytes: &[u8]) {
        let mut state = self.lock();
        if state.failed {
            return;
        }
        let room = self.capacity.saturating_sub(state.pending.len());
        let taken = room.min(bytes.len());
        state.pending.extend_from_slice(&bytes[..taken]);
        let lost = (bytes.len() - taken) as u64;
        state.dropped += lost;
        state.unreported_drops += lost;
        // Waking costs a syscall; only a waiting writer thread needs it.
        if taken > 0 && state.writer_waiting {
            self.work.notify_one();
        }
    }
}

/// The last handle's drop tells the writer thread to finish.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.work.notify_one();
    }
}

/// A non-blocking writer to one host file; clones share its buffer and thread, so what
/// they write reaches the file in the order it was written.
#[derive(Clone)]
pub struct HostOutput(Arc<Handle>);

impl HostOutput {
    /// The output, and its thread `name` that writes to `file` once launched; the thread
    /// runs `setup` first (the VMM installs its seccomp filter there). At most `capacity`
    /// bytes wait for the file, from before the thread starts too.
    pub fn new(
        name: &str,
        file: impl Write + Send + 'static,
        capacity: usize,
        setup: impl FnOnce() + Send + 'static,
    ) -> (Self, PendingThread) {
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            capacity,
            state: Mutex::new(State {
                pending: Vec::with_capacity(capacity),
                ..State::default()
            }),
            work: Condvar::new(),
            written: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread = PendingThread::new(name, move || {
            setup();
            write_until_closed(&thread_shared, file);
        });
        (Self(Arc::new(Handle(shared))), thread)
    }

    fn shared(&self) -> &Shared {
        &self.0 .0
    }

    /// Bytes dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared().lock().dropped
    }

    /// Bytes taken but not yet written to the file.
    pub fn unwritten(&self) -> usize {
        let state = self.shared().lock();
        if state.failed {
            0
        } else {
            state.pending.len() + state.in_flight
        }
    }

    /// Waits until everything written so far reached the file (or the file failed), or
    /// `deadline` passed; true in the first case.
    pub fn wait_written(&self, deadline: Instant) -> bool {
        let shared = self.shared();
        let mut state = shared.lock();
        while !state.is_written() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = shared
                .written
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The thread's name, which says what the file is.
    pub fn name(&self) -> &str {
        &self.shared().name
    }
}

impl Write for HostOutput {
    /// Takes all of `buf`: what does not fit is dropped, never waited for.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared().push(buf);
        Ok(buf.len())
    }

    /// Returns at once: the writer thread flushes after each batch.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writer thread: takes everything pending in one batch, writes it, repeats.
fn write_until_closed(shared: &Shared, mut file: impl Write) {
    let mut batch = Vec::with_capacity(shared.capacity);
    loop {
        let drops = {
            let mut state = shared.lock();
            state.in_flight = 0;
            while state.pending.is_empty() && !state.closed {
                shared.written.notify_all();
                state.writer_waiting = true;
                state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
                state.writer_waiting = false;
            }
            if state.pending.is_empty() {
                shared.written.notify_all();
                return;
            }
            batch.clear();
            std::mem::swap(&mut state.pending, &mut batch);
            state.in_flight = batch.len();
            state.take_drop_report(Instant::now())
        };
        if let Some(bytes) = drops {
            log::warn!(
                "{}: {bytes} bytes of output dropped: the reader is not keeping up",
                shared.name
            );
        }
        if let Err(e) = file.write_all(&batch).and_then(|()| file.flush()) {
            log::warn!(
                "{}: cannot write ({e}); further output is discarded",
                shared.name
            );
            let mut state = shared.lock();
            state.failed = true;
            state.pending = Vec::new();
            state.in_flight = 0;
            shared.written.notify_all();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::mpsc;

    const TEST_DEADLINE: Duration = Duration::from_secs(10);

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two new fds into the array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the fds are new and owned by nothing else.
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
    }

    fn start(file: impl Write + Send + 'static, capacity: usize) -> HostOutput {
        let (output, thread) = HostOutput::new("out-test", file, capacity, || {});
        thread.launch().unwrap();
        output
    }

    /// Runs `f` on another thread; fails the test if it takes longer than `limit`.
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit)
            .expect("a write blocked on a file that does not drain")
    }

    /// Writes `bytes` through a clone of `output`, failing the test if that blocks.
    fn write_at_once(output: &HostOutput, bytes: &[u8]) {
        let (mut writer, bytes) = (output.clone(), bytes.to_vec());
        within(TEST_DEADLINE, move || writer.write_all(&bytes).unwrap());
    }

    /// A file whose writes wait for the test: each says it started, then waits for the gate
    /// (which opens for good when its sender is dropped).
    struct GatedFile {
        started: mpsc::Sender<()>,
        gate: mpsc::Receiver<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for GatedFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.started.send(());
            let _ = self.gate.recv();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Gate {
        started: mpsc::Receiver<()>,
        open: Option<mpsc::Sender<()>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    fn gated_file() -> (GatedFile, Gate) {
        let (started_tx, started) = mpsc::channel();
        let (open, gate) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let file = GatedFile {
            started: started_tx,
            gate,
            written: written.clone(),
        };
        let gate = Gate {
            started,
            open: Some(open),
            written,
        };
        (file, gate)
    }

    /// A pipe already full of `FILLER` bytes, so the next write to it blocks until read;
    /// returns the two ends and how many bytes fill it.
    fn full_pipe() -> (File, File, usize) {
        let (read_end, mut write_end) = pipe();
        let fd = write_end.as_raw_fd();
        // SAFETY: fcntl on an fd this test owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) },
            0
        );
        let mut filled = 0;
        loop {
            match write_end.write(&[FILLER; 4096]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the pipe: {e}"),
            }
        }
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }, 0);
        (read_end, write_end, filled)
    }

    const FILLER: u8 = b'.';

    #[test]
    fn writes_return_at_once_while_the_pipe_is_not_read() {
        let (mut read_end, write_end, filled) = full_pipe();
        let output = start(write_end, DEFAULT_CAPACITY);
        let writer = output.clone();
        let total = 4 * DEFAULT_CAPACITY;
        within(TEST_DEADLINE, move || {
            let mut writer = writer;
            for _ in 0..total / 64 {
                writer.write_all(&[b'x'; 64]).unwrap();
                writer.flush().unwrap();
            }
        });
        let dropped = output.dropped() as usize;
        assert!(
            dropped > 0 && dropped < total,
            "dropped {dropped} of {total}"
        );
        assert!(!output.wait_written(Instant::now() + Duration::from_millis(50)));

        // Once read, everything not dropped arrives, and the thread ends with the last handle.
        drop(output);
        let got = within(TEST_DEADLINE, move || {
            let mut got = Vec::new();
            read_end.read_to_end(&mut got).unwrap();
            got
        });
        let (filler, data) = got.split_at(filled);
        assert!(filler.iter().all(|&b| b == FILLER));
        assert_eq!(data.len(), total - dropped);
        assert!(data.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn bytes_arrive_in_order_when_the_reader_drains() {
        let (mut read_end, write_end) = pipe();
        let reader = std::thread::spawn(move || {
            let mut got = String::new();
            read_end.read_to_string(&mut got).unwrap();
            got
        });
        let mut output = start(write_end, DEFAULT_CAPACITY);
        let mut sent = String::new();
        for i in 0..2000 {
            let line = format!("line {i}\n");
            // Byte by byte, as the serial port writes.
            for byte in line.bytes() {
                output.write_all(&[byte]).unwrap();
            }
            sent.push_str(&line);
        }
        assert!(output.wait_written(Instant::now() + TEST_DEADLINE));
        assert_eq!(output.dropped(), 0);
        assert_eq!(output.unwritten(), 0);
        drop(output);
        assert_eq!(reader.join().unwrap(), sent);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_what_does_not_fit() {
        let (file, mut gate) = gated_file();
        let output = start(file, 16);
        write_at_once(&output, b"first");
        // The thread now holds "first" in its write; the buffer is empty again.
        gate.started.recv_timeout(TEST_DEADLINE).unwrap();
        write_at_once(&output, &[b'a'; 16]);
        write_at_once(&output, b"lost");
        assert_eq!(output.dropped(), 4);
        assert_eq!(output.unwritten(), 5 + 16);

        gate.open = None;
        assert!(output.wait_written(Instant::now() + TEST_DEADLINE));
        let mut expected = b"first".to_vec();
        expected.extend([b'a'; 16]);
        assert_eq!(*gate.written.lock().unwrap(), expected);
        assert_eq!(output.dropped(), 4);
    }

    #[test]
    fn waiting_for_a_stuck_file_ends_at_the_deadline() {
        let (file, gate) = gated_file();
        let output = start(file, 16);
        write_at_once(&output, b"stuck");
        gate.started.recv_timeout(TEST_DEADLINE).unwrap();
        let asked = Instant::now();
        assert!(!output.wait_written(asked + Duration::from_millis(100)));
        assert!(asked.elapsed() < TEST_DEADLINE);
        drop(gate);
    }

    #[test]
    fn a_failed_file_discards_output_and_counts_as_written() {
        let (read_end, write_end) = pipe();
        drop(read_end);
        let mut output = start(write_end, 16);
        output.write_all(b"nobody").unwrap();
        assert!(output.wait_written(Instant::now() + TEST_DEADLINE));
        output.write_all(b"more").unwrap();
        assert_eq!(output.unwritten(), 0);
        assert_eq!(output.dropped(), 0);
    }

    #[test]
    fn drops_are_reported_at_most_once_per_interval() {
        let mut state = State::default();
        let t0 = Instant::now();
        assert_eq!(state.take_drop_report(t0), None);
        state.unreported_drops = 3;
        assert_eq!(state.take_drop_report(t0), Some(3));
        state.unreported_drops = 5;
        assert_eq!(state.take_drop_report(t0 + Duration::from_secs(1)), None);
        assert_eq!(state.take_drop_report(t0 + DROP_REPORT_INTERVAL), Some(5));
    }
}
