//! Summaries of timing samples, and nanoseconds shown as microseconds, for benchmarks
//! that run without floating point (the guest is built without SSE).

use crate::text::{Show, Sink};

/// The smallest, middle and largest of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

/// Sorts `samples` and summarises them; `None` when there are none. The median of an
/// even count is the mean of the middle two.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    // Insertion sort: a few hundred samples, no allocator.
    for i in 1..samples.len() {
        let mut j = i;
        while j > 0 && samples[j - 1] > samples[j] {
            samples.swap(j - 1, j);
            j -= 1;
        }
    }
    let n = samples.len();
    let median = if n % 2 == 1 {
        samples[n / 2]
    } else {
        samples[n / 2 - 1] / 2
            + samples[n / 2] / 2
            + (samples[n / 2 - 1] % 2 + samples[n / 2] % 2) / 2
    };
    Some(Summary {
        min: samples[0],
        median,
        max: samples[n - 1],
    })
}

/// Nanoseconds shown as microseconds with three decimals: `Micros(12_345)` is `12.345`.
#[derive(Clone, Copy, Debug)]
pub struct Micros(pub u64);

impl Show for Micros {
    fn show<S: Sink>(&self, out: &mut S) {
        (self.0 / 1000).show(out);
        let fraction = self.0 % 1000;
        let digits = [
            b'.',
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ];
        out.put(&digits);
    }
}

/// Converts TSC ticks to nanoseconds at `hz` ticks a second.
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    (u128::from(ticks) * 1_000_000_000 / u128::from(hz)).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format_line;

    #[test]
    fn odd_count_takes_the_middle_sample() {
        let mut s = [9, 1, 5, 7, 3];
        let summary = summarize(&mut s).unwrap();
        assert_eq!(
            summary,
            Summary {
                min: 1,
                median: 5,
                max: 9
            }
        );
        assert_eq!(s, [1, 3, 5, 7, 9]);
    }

    #[test]
    fn even_count_averages_the_middle_two_without_overflow() {
        let mut s = [4, 1, 3, 2];
        assert_eq!(summarize(&mut s).unwrap().median, 2);
        let mut big = [u64::MAX, u64::MAX - 2];
        assert_eq!(summarize(&mut big).unwrap().median, u64::MAX - 1);
        let mut odd_pair = [3, 6];
        assert_eq!(summarize(&mut odd_pair).unwrap().median, 4);
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn micros_keep_three_decimals() {
        assert_eq!(format_line!(Micros(12_345)).as_bytes(), b"12.345");
        assert_eq!(format_line!(Micros(7)).as_bytes(), b"0.007");
        assert_eq!(format_line!(Micros(2_000_050)).as_bytes(), b"2000.050");
    }

    #[test]
    fn ticks_become_nanoseconds() {
        assert_eq!(ticks_to_ns(3_000, 3_000_000_000), 1_000);
        assert_eq!(ticks_to_ns(1, 2_000_000_000), 0);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
        assert_eq!(ticks_to_ns(5, 0), 0);
    }
}
