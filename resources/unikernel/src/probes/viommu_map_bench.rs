//! `viommu-map-bench[:N]`: how long a MAP and its UNMAP take for an endpoint whose
//! mappings nestor mirrors on the host IOMMU. QEMU's edu device, passed through with
//! `--vfio path=...,iommu=on`, is attached to a domain, so each MAP and UNMAP becomes a
//! host VFIO map and unmap. N rounds (default 100) of a 4 KiB mapping, then N of a 2 MiB
//! one, each round timed with the TSC from posting the MAP to the UNMAP's completion;
//! prints the minimum, median and maximum of each size in ns and µs.

use super::{Context, Outcome, Probe};
use crate::clock::{rdtsc, tsc_frequency};
use crate::edu;
use crate::kprintln;
use crate::virtio_iommu::{self, VirtioIommu, MAP_F_READ, MAP_F_WRITE};
use unikernel::cmdline::parse_number;
use unikernel::format_line;
use unikernel::stats::{summarize, ticks_to_ns, Micros};
use unikernel::text::Line;

pub const PROBE: Probe = Probe {
    name: "viommu-map-bench",
    run,
};

const DEFAULT_ROUNDS: usize = 100;
const MAX_ROUNDS: usize = 1000;
/// Where the mappings go: a 2 MiB-aligned IOVA, and guest RAM from 2 MiB up (every guest
/// has it, the smallest being 8 MiB). Nothing is transferred: edu stays idle.
const IOVA: u64 = 0x0400_0000;
const GPA: u64 = 0x0020_0000;
const SIZES: [(u64, &str); 2] = [(0x1000, "4KiB"), (0x20_0000, "2MiB")];

fn run(_ctx: &Context, arg: Option<&str>) -> Outcome {
    let rounds = match arg {
        None => DEFAULT_ROUNDS,
        Some(text) => match parse_number(text) {
            Some(n) if (1..=MAX_ROUNDS as u64).contains(&n) => n as usize,
            _ => {
                return Err(format_line!(
                    "bad round count '",
                    text,
                    "' (want viommu-map-bench:N, N from 1 to ",
                    MAX_ROUNDS,
                    ")"
                ))
            }
        },
    };
    let edu_bdf = edu::find().ok_or_else(|| format_line!("no edu device (1234:11e8) on bus 0"))?;
    let iommu_bdf = virtio_iommu::find()
        .ok_or_else(|| format_line!("no virtio-iommu on bus 0 (give --vfio path=...,iommu=on)"))?;
    let mut iommu = VirtioIommu::open(iommu_bdf)?;
    let endpoint = virtio_iommu::endpoint_id(edu_bdf);
    let (domain, _) = iommu.domain_range();
    iommu.attach(domain, endpoint, 0)?;
    let (hz, source) = tsc_frequency();
    kprintln!(
        "viommu-map-bench: tsc_hz=",
        hz,
        " (",
        source.name(),
        ") rounds=",
        rounds
    );
    let mut samples = [0u64; MAX_ROUNDS];
    for (size, name) in SIZES {
        time_rounds(&mut iommu, domain, size, &mut samples[..rounds])?;
        let summary =
            summarize(&mut samples[..rounds]).ok_or_else(|| format_line!("no samples"))?;
        let ns = |ticks| ticks_to_ns(ticks, hz);
        let (min, median, max) = (ns(summary.min), ns(summary.median), ns(summary.max));
        kprintln!(
            "viommu-map-bench: map+unmap size=",
            name,
            " rounds=",
            rounds,
            " median_ns=",
            median,
            " min_ns=",
            min,
            " max_ns=",
            max,
            " median_us=",
            Micros(median),
            " min_us=",
            Micros(min),
            " max_us=",
            Micros(max)
        );
    }
    iommu.detach(domain, endpoint)?;
    Ok(())
}

/// Fills `samples` with the TSC ticks of one MAP + UNMAP of `size` bytes each.
fn time_rounds(
    iommu: &mut VirtioIommu,
    domain: u32,
    size: u64,
    samples: &mut [u64],
) -> Result<(), Line> {
    for sample in samples.iter_mut() {
        let start = rdtsc();
        iommu.map(domain, IOVA, size, GPA, MAP_F_READ | MAP_F_WRITE)?;
        iommu.unmap(domain, IOVA, size)?;
        *sample = rdtsc().saturating_sub(start);
    }
    Ok(())
}
