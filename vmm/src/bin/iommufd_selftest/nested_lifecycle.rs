//! The iommufd nested back-end behind a real virtio-iommu, its endpoints the test driver's
//! mock devices: ATTACH_TABLE, ATTACH, INVALIDATE, DETACH and hostile requests travel
//! through the requestq, and the test driver's check operations say what reached the
//! kernel. At the end every kernel object is gone.

use std::time::{Duration, Instant};

use devices::host_iommu::iommufd_selftest::{
    self as selftest, selftest_iotlb, DEV_CACHE_DEFAULT, DEV_CACHE_NUM,
};
use devices::host_iommu::nested::BYPASS_VSTE;
use devices::virtio::iommu::driver_harness::{attach, attach_table, detach, invalidate};
use devices::virtio::iommu::nested_protocol::{caches, invalidate_flags, scope};
use devices::virtio::iommu::protocol::Status;
use iommufd_ioctls::IommuFd;

use crate::nested_vm::{expect, is_gone, NestedVm, SID_A, SID_B, SID_C};
use crate::{err, Check};

/// Stage-1 STEs with CD tables in the harness's guest RAM, S1CDMax 2.
const STE_1: u64 = 1 | 0b101 << 1 | 0x40_0000 | 2 << 59;
const STE_2: u64 = 1 | 0b101 << 1 | 0x50_0000 | 2 << 59;
/// An abort STE: what a detached endpoint is left with.
const STE_ABORT: u64 = 1;
const INVALIDATE_ROUNDS: usize = 200;

fn refused(what: &str, got: Option<Status>) -> Result<Status, String> {
    match got {
        Some(Status::Ok) | None => Err(format!("{what}: status {got:?}, want a refusal")),
        Some(status) => Ok(status),
    }
}

/// The mock device's cache entries as the test driver's check operation reports them:
/// `true` where the entry still holds its value from before any invalidation.
fn untouched_cache(iommufd: &IommuFd, idev_id: u32) -> Result<Vec<bool>, String> {
    (0..DEV_CACHE_NUM)
        .map(|i| {
            let is = |value| {
                selftest::dev_cache_is(iommufd, idev_id, i, value)
                    .map_err(|e| err("DEV_CHECK_CACHE", e))
            };
            let (untouched, cleared) = (is(DEV_CACHE_DEFAULT)?, is(0)?);
            if untouched == cleared {
                return Err(format!(
                    "device {idev_id} cache {i} is neither untouched nor cleared"
                ));
            }
            Ok(untouched)
        })
        .collect()
}

fn expect_cache(
    iommufd: &IommuFd,
    what: &str,
    idev_id: u32,
    want: [bool; DEV_CACHE_NUM as usize],
) -> Result<(), String> {
    let got = untouched_cache(iommufd, idev_id)?;
    if got != want {
        return Err(format!(
            "{what}: device {idev_id}'s cache entries untouched {got:?}, want {want:?}"
        ));
    }
    Ok(())
}

/// Whether the kernel's nested HWPT was made from the STE with dword 0 `ste0`.
fn made_from(iommufd: &IommuFd, hwpt: u32, ste0: u64) -> Result<bool, String> {
    selftest::nested_iotlb_is(iommufd, hwpt, 0, selftest_iotlb([ste0, 0]))
        .map_err(|e| err("MD_CHECK_IOTLB", e))
}

pub fn check() -> Check {
    let mut vm = NestedVm::new(16, None)?;
    let detail = exercise(&mut vm)?;
    vm.finish()?;
    Ok(detail)
}

/// The requests, in the order a guest would send them, and what the kernel saw of each.
fn exercise(vm: &mut NestedVm) -> Check {
    let iommufd = vm.iommufd.clone();
    let (idev_a, idev_b) = (vm.a.idev_id, vm.b.idev_id);
    let fresh = [true; DEV_CACHE_NUM as usize];

    // Before any request the devices are off the nest parent: unattached without bypass,
    // they abort, as passed-through devices do.
    let initial = vm.hwpt_of(SID_A)?;
    if !made_from(&iommufd, initial, STE_ABORT)? {
        return Err("before any request, A is not on an abort configuration".into());
    }
    // A guest STE becomes a nested HWPT made from it, attached to A.
    expect(
        "ATTACH_TABLE a",
        vm.send(&attach_table(1, SID_A, STE_1, 0)),
        Status::Ok,
    )?;
    let first = vm.hwpt_of(SID_A)?;
    if !made_from(&iommufd, first, STE_1)? || !is_gone(&iommufd, initial)? {
        return Err("A's nested HWPT was not made from the guest's STE in place of abort".into());
    }
    // B joins the table-mode domain with a plain ATTACH: its own HWPT of the same STE.
    expect("ATTACH b", vm.send(&attach(1, SID_B, 0, 0)), Status::Ok)?;
    let hwpt_b = vm.hwpt_of(SID_B)?;
    if hwpt_b == first || !made_from(&iommufd, hwpt_b, STE_1)? {
        return Err("B did not get a nested HWPT of the domain's STE".into());
    }
    // A moves to a domain of its own with another STE: a new HWPT by replacement, the old
    // one destroyed.
    expect(
        "ATTACH_TABLE a again",
        vm.send(&attach_table(2, SID_A, STE_2, 0)),
        Status::Ok,
    )?;
    let second = vm.hwpt_of(SID_A)?;
    if second == first || !made_from(&iommufd, second, STE_2)? {
        return Err("A's second STE did not replace its nested HWPT".into());
    }
    if !is_gone(&iommufd, first)? {
        return Err(format!("A's replaced HWPT {first} was still alive"));
    }
    expect_cache(&iommufd, "before any INVALIDATE", idev_a, fresh)?;

    // INVALIDATE of one PASID's CD in A's domain reaches A's cache entry for it, no other.
    let cd = invalidate(2, scope::PASID, caches::CD, invalidate_flags::PASID, 1);
    expect("INVALIDATE a pasid 1", vm.send(&cd), Status::Ok)?;
    expect_cache(
        &iommufd,
        "after CFGI_CD pasid 1",
        idev_a,
        [true, false, true, true],
    )?;
    expect_cache(&iommufd, "after CFGI_CD pasid 1 of a", idev_b, fresh)?;
    // A TLB-only INVALIDATE has nothing to reach on the mock, which caches no
    // translations behind a vIOMMU.
    let tlb = invalidate(1, scope::DOMAIN, caches::TLB, 0, 0);
    expect("INVALIDATE b tlb", vm.send(&tlb), Status::Ok)?;
    expect_cache(&iommufd, "after a TLB invalidation", idev_b, fresh)?;
    let all = invalidate(1, scope::DOMAIN, caches::CD, 0, 0);
    expect("INVALIDATE b all", vm.send(&all), Status::Ok)?;
    expect_cache(&iommufd, "after CFGI_CD_ALL", idev_b, [false; 4])?;

    // Hostile requests: refused, and nothing changes on the host.
    let config_nested = refused(
        "ATTACH_TABLE, Config nested",
        vm.send(&attach_table(2, SID_A, 1 | 0b111 << 1, 0)),
    )?;
    let mev = refused(
        "ATTACH_TABLE, MEV",
        vm.send(&attach_table(2, SID_A, STE_2, 1 << 19)),
    )?;
    let no_vdevice = refused(
        "ATTACH_TABLE, no vDEVICE",
        vm.send(&attach_table(3, SID_C, STE_1, 0)),
    )?;
    let unknown_endpoint = refused(
        "ATTACH_TABLE, unknown endpoint",
        vm.send(&attach_table(3, 0x99, STE_1, 0)),
    )?;
    if vm.hwpt_of(SID_A)? != second {
        return Err("a refused ATTACH_TABLE changed A's nested HWPT".into());
    }

    let median_us = time_invalidations(vm, &cd)?;

    // B has no MAP domain (the host holds no IOVA mappings for it); a bypass domain is an
    // STE whose stage 1 bypasses, in place of its table.
    let map_domain = refused("ATTACH b to a MAP domain", vm.send(&attach(4, SID_B, 0, 0)))?;
    if vm.hwpt_of(SID_B)? != hwpt_b {
        return Err("a refused ATTACH moved B's nested HWPT".into());
    }
    expect(
        "ATTACH b to a bypass domain",
        vm.send(&attach(5, SID_B, 1, 0)),
        Status::Ok,
    )?;
    let bypassing = vm.hwpt_of(SID_B)?;
    if !made_from(&iommufd, bypassing, BYPASS_VSTE[0])? || !is_gone(&iommufd, hwpt_b)? {
        return Err("B in a bypass domain is not on a stage-1 bypass configuration".into());
    }

    // DETACH: A is left with an abort configuration and its CDs are invalidated.
    expect("DETACH a", vm.send(&detach(2, SID_A, 0)), Status::Ok)?;
    expect_cache(&iommufd, "after DETACH", idev_a, [false; 4])?;
    let aborting = vm.hwpt_of(SID_A)?;
    if aborting == second || !made_from(&iommufd, aborting, STE_ABORT)? {
        return Err("after DETACH, A is not on an abort configuration".into());
    }
    let detached = refused("INVALIDATE of a detached endpoint's domain", vm.send(&cd))?;
    Ok(format!(
        "hwpts={initial},{first},{hwpt_b},{second},{bypassing},{aborting} refused: \
         config_nested={config_nested:?} mev={mev:?} no_vdevice={no_vdevice:?} \
         unknown_endpoint={unknown_endpoint:?} map_domain={map_domain:?} \
         detached={detached:?} invalidate_median_us={median_us:.1}"
    ))
}

/// One guest INVALIDATE (a PASID's CD) through the requestq, the vIOMMU and the test
/// driver, timed; the median in microseconds.
fn time_invalidations(vm: &NestedVm, request: &[u8]) -> Result<f64, String> {
    let mut times: Vec<Duration> = Vec::with_capacity(INVALIDATE_ROUNDS);
    for round in 0..INVALIDATE_ROUNDS {
        let start = Instant::now();
        let status = vm.send(request);
        times.push(start.elapsed());
        expect(&format!("INVALIDATE round {round}"), status, Status::Ok)?;
    }
    times.sort_unstable();
    Ok(times[times.len() / 2].as_secs_f64() * 1e6)
}
