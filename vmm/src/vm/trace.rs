//! The `--boot-timer` trace: when each step of the VM's start and end happened, in
//! microseconds since nestor started, how long it took since the line before, and how many
//! page faults the thread that took the step had in it.
//!
//! nestor's own steps (`step=NAME`), the boot vCPU's first KVM_RUN, the guest's writes to the
//! boot-timer port (`code=N`) and when each vCPU left the guest are printed together in time
//! order once the VM has ended, so a regression shows as one line whose `+` grew:
//!
//! ```text
//! nestor: boot-timer step=main at 0 us (+0 us) faults=109
//! nestor: boot-timer step=memory at 412 us (+180 us) faults=2
//! nestor: first KVM_RUN at 1103 us (+95 us)
//! nestor: boot-timer code=0 at 1290 us (+187 us)
//! nestor: boot-timer step=vm-closed at 15422 us (+14011 us) faults=0
//! ```
//!
//! `step=main` is `main`'s start, the zero of the times; its faults are those before it (the
//! kernel's exec, the dynamic loader, Rust's runtime). A page fault costs microseconds where
//! the host is virtualized, so a step that grew by as many faults as microseconds is found
//! at once. The counts are minor faults of the VMM thread, which takes every step
//! (getrusage's RUSAGE_THREAD: the process-wide count costs more to read).
//!
//! Recording is a clock read, a push and, with `--boot-timer`, a getrusage; nothing is
//! printed while the guest runs.

use std::time::{Duration, Instant};

use devices::legacy::boot_timer::BootMark;

/// When nestor started, and the page faults its starting thread had by then.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub at: Instant,
    pub faults: u64,
}

impl Start {
    /// Now, on the thread that will call [`run_vm`](super::run_vm).
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            faults: thread_faults(),
        }
    }
}

/// The calling thread's minor page faults so far; 0 where the kernel does not say.
fn thread_faults() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the one rusage it is given, which is zeroed to begin with.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    u64::try_from(usage.ru_minflt).unwrap_or(0)
}

/// One of nestor's steps: its name, when it ended, and the thread's page faults by then
/// (when counted).
struct Step {
    name: &'static str,
    at: Duration,
    faults: Option<u64>,
}

/// nestor's own steps, recorded by the thread that builds and ends the VM.
pub struct Trace {
    start: Start,
    count_faults: bool,
    steps: Vec<Step>,
}

impl Trace {
    /// Faults are counted only when `count_faults` (with `--boot-timer`): each count is a
    /// system call.
    pub fn new(start: Start, count_faults: bool) -> Self {
        Self {
            start,
            count_faults,
            steps: Vec::with_capacity(32),
        }
    }

    /// Marks the end of step `name`.
    pub fn step(&mut self, name: &'static str) {
        let at = self.start.at.elapsed();
        let faults = self.count_faults.then(thread_faults);
        self.steps.push(Step { name, at, faults });
    }

    /// Marks the end of step `name` at `end`, taken earlier on this thread (before the
    /// trace existed).
    pub fn step_ended(&mut self, name: &'static str, end: Start) {
        let at = end.at.saturating_duration_since(self.start.at);
        let faults = self.count_faults.then_some(end.faults);
        self.steps.push(Step { name, at, faults });
    }
}

/// What happened at one point of the VM's life, for the report.
enum Event {
    /// A step, and the faults in it (when counted).
    Step(&'static str, Option<u64>),
    FirstRun,
    Guest(u8),
    VcpuStopped(u8),
}

/// The lines `--boot-timer` prints, in time order.
pub fn lines(
    trace: &Trace,
    first_run: Option<Duration>,
    marks: &[BootMark],
    vcpu_stops: &[(u8, Duration)],
) -> Vec<String> {
    let mut faults_before = trace.start.faults;
    let mut events: Vec<(Duration, Event)> = Vec::with_capacity(trace.steps.len() + 8);
    if trace.count_faults {
        events.push((Duration::ZERO, Event::Step("main", Some(faults_before))));
    }
    for step in &trace.steps {
        let in_step = step.faults.map(|faults| {
            let in_step = faults.saturating_sub(faults_before);
            faults_before = faults;
            in_step
        });
        events.push((step.at, Event::Step(step.name, in_step)));
    }
    events.extend(first_run.map(|at| (at, Event::FirstRun)));
    events.extend(marks.iter().map(|m| (m.since_start, Event::Guest(m.code))));
    events.extend(
        vcpu_stops
            .iter()
            .map(|&(index, at)| (at, Event::VcpuStopped(index))),
    );
    // Stable: a step recorded after a guest mark with the same timestamp stays after it.
    events.sort_by_key(|(at, _)| *at);
    let mut previous = 0;
    events
        .into_iter()
        .map(|(at, event)| {
            // Whole microseconds first, so that each line is the one before plus its delta.
            let at = at.as_micros();
            let (what, faults) = match event {
                Event::Step(name, faults) => (format!("boot-timer step={name}"), faults),
                Event::FirstRun => ("first KVM_RUN".to_string(), None),
                Event::Guest(code) => (format!("boot-timer code={code}"), None),
                Event::VcpuStopped(index) => {
                    (format!("boot-timer step=vcpu{index}-left-guest"), None)
                }
            };
            let delta = at - previous;
            previous = at;
            let faults = faults.map_or(String::new(), |n| format!(" faults={n}"));
            format!("nestor: {what} at {at} us (+{delta} us){faults}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn events_print_in_time_order_with_the_time_since_the_line_before() {
        let start = Start {
            at: Instant::now(),
            faults: 0,
        };
        let mut trace = Trace::new(start, false);
        trace.steps = [("vm", 100), ("memory", 300), ("exit", 900)]
            .map(|(name, at)| Step {
                name,
                at: us(at),
                faults: None,
            })
            .into();
        let marks = [BootMark {
            code: 0,
            since_start: us(500),
        }];
        let lines = lines(&trace, Some(us(400)), &marks, &[(0, us(700))]);
        assert_eq!(
            lines,
            [
                "nestor: boot-timer step=vm at 100 us (+100 us)",
                "nestor: boot-timer step=memory at 300 us (+200 us)",
                "nestor: first KVM_RUN at 400 us (+100 us)",
                "nestor: boot-timer code=0 at 500 us (+100 us)",
                "nestor: boot-timer step=vcpu0-left-guest at 700 us (+200 us)",
                "nestor: boot-timer step=exit at 900 us (+200 us)",
            ]
        );
    }

    #[test]
    fn each_step_counts_the_faults_since_the_step_before_and_main_those_before_it() {
        let start = Start {
            at: Instant::now(),
            faults: 110,
        };
        let mut trace = Trace::new(start, true);
        trace.steps = [("config", 200, 133), ("kvm", 230, 134), ("exit", 900, 140)]
            .map(|(name, at, faults)| Step {
                name,
                at: us(at),
                faults: Some(faults),
            })
            .into();
        let lines = lines(&trace, Some(us(400)), &[], &[]);
        assert_eq!(
            lines,
            [
                "nestor: boot-timer step=main at 0 us (+0 us) faults=110",
                "nestor: boot-timer step=config at 200 us (+200 us) faults=23",
                "nestor: boot-timer step=kvm at 230 us (+30 us) faults=1",
                "nestor: first KVM_RUN at 400 us (+170 us)",
                "nestor: boot-timer step=exit at 900 us (+500 us) faults=6",
            ]
        );
    }

    #[test]
    fn a_step_counts_the_faults_of_its_thread() {
        let mut trace = Trace::new(Start::now(), true);
        trace.step("before");
        // A fresh mapping's pages fault in on first touch, one each.
        let pages = 16;
        // SAFETY: an anonymous private mapping, unmapped below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        for page in 0..pages {
            // SAFETY: inside the mapping.
            unsafe { map.cast::<u8>().add(page * 4096).write_volatile(1) };
        }
        trace.step("touched");
        // SAFETY: mapped above, no longer used.
        unsafe { libc::munmap(map, pages * 4096) };
        let lines = lines(&trace, None, &[], &[]);
        let faults: u64 = lines[2]
            .split_once(" faults=")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or_else(|| panic!("no fault count in {lines:?}"));
        assert!(
            (pages as u64..pages as u64 + 8).contains(&faults),
            "{lines:?}"
        );
    }
}
