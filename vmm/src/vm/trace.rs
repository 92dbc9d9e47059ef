//! The `--boot-timer` trace: when each step of the VM's start and end happened, in
//! microseconds since nestor started, and how long it took since the line before.
//!
//! nestor's own steps (`step=NAME`), the boot vCPU's first KVM_RUN, the guest's writes to the
//! boot-timer port (`code=N`) and when each vCPU left the guest are printed together in time
//! order once the VM has ended, so a regression shows as one line whose `+` grew:
//!
//! ```text
//! nestor: boot-timer step=memory at 412 us (+180 us)
//! nestor: first KVM_RUN at 1103 us (+95 us)
//! nestor: boot-timer code=0 at 1290 us (+187 us)
//! nestor: boot-timer step=vm-closed at 15422 us (+14011 us)
//! ```
//!
//! Recording is a clock read and a push; nothing is printed while the guest runs.

use std::time::{Duration, Instant};

use devices::legacy::boot_timer::BootMark;

/// nestor's own steps, recorded by the thread that builds and ends the VM.
pub struct Trace {
    started: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Trace {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            steps: Vec::with_capacity(32),
        }
    }

    /// Marks the end of step `name`.
    pub fn step(&mut self, name: &'static str) {
        self.steps.push((name, self.started.elapsed()));
    }
}

/// What happened at one point of the VM's life, for the report.
enum Event {
    Step(&'static str),
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
    let mut events: Vec<(Duration, Event)> = trace
        .steps
        .iter()
        .map(|&(name, at)| (at, Event::Step(name)))
        .collect();
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
            let what = match event {
                Event::Step(name) => format!("boot-timer step={name}"),
                Event::FirstRun => "first KVM_RUN".to_string(),
                Event::Guest(code) => format!("boot-timer code={code}"),
                Event::VcpuStopped(index) => format!("boot-timer step=vcpu{index}-left-guest"),
            };
            let delta = at - previous;
            previous = at;
            format!("nestor: {what} at {at} us (+{delta} us)")
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
        let mut trace = Trace::new(Instant::now());
        trace.steps = vec![("vm", us(100)), ("memory", us(300)), ("exit", us(900))];
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
}
