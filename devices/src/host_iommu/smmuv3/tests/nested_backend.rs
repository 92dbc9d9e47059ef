//! The model through the nested back-end trait, as the virtio-iommu and the fault relay
//! will drive it.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::encode::*;
use super::tlb_commands::Recorder;
use super::walks::{offset_stage2, OFFSET};
use super::*;
use crate::host_iommu::nested::{NestedError, NestedHostIommu, PageResponseCode};
use crate::host_iommu::smmuv3::wire::{event_id, PriEntry};
use crate::host_iommu::smmuv3::{DeviceEffect, HostStage2, PriResponse, StallState, Termination};

const SID: u32 = 9;

/// Host stage 2 as in the walk tests (IPA x -> PA x + 16 MiB, VMID 7), a guest CD (at an
/// IPA) whose stage 1 maps 0x1000 to IPA 0x5000. Returns the CD's IPA and the root PA.
fn guest(rig: &Rig, cd: CdFields) -> (u64, u64) {
    let [d2, d3] = offset_stage2(rig).encode();
    rig.smmu.set_host_stage2(Some(HostStage2 {
        ste_dword2: d2,
        ste_dword3: d3,
    }));
    let root = rig.page();
    let cd_pa = rig.alloc(64);
    rig.write_all(
        cd_pa,
        &CdFields {
            ttb0: root - OFFSET,
            ..cd
        }
        .encode(),
    );
    map_at(rig, 12, OFFSET, root, 0, 0x1000, 3, s1_page(0x5000));
    (cd_pa - OFFSET, root)
}

fn vste(config: u64, cd_ipa: u64) -> [u64; 2] {
    [1 | config << 1 | cd_ipa, 0]
}

fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

#[test]
fn installed_stes_translate_through_the_host_stage2() {
    let rig = Rig::new();
    let (cd_ipa, _) = guest(&rig, CdFields::default());
    rig.smmu.install_ste(SID, vste(0b101, cd_ipa)).unwrap();
    assert_eq!(rig.read(SID, 0x1008).unwrap(), 0x5008 + OFFSET);
    // Guest bypass: stage 2 only.
    rig.smmu.install_ste(SID, vste(0b100, 0)).unwrap();
    assert_eq!(rig.read(SID, 0x1008).unwrap(), 0x1008 + OFFSET);
    // V = 0 and removal abort, silently.
    rig.smmu.install_ste(SID, [0, 0]).unwrap();
    assert_eq!(rig.read(SID, 0x1008).unwrap_err().event, None);
    rig.smmu.install_ste(SID, vste(0b101, cd_ipa)).unwrap();
    rig.smmu.remove_ste(SID).unwrap();
    assert_eq!(rig.read(SID, 0x1008).unwrap_err().event, None);
    assert!(matches!(
        rig.smmu.install_ste(SID, [1 | 0b111 << 1, 0]),
        Err(NestedError::IllegalSte { stream: SID, .. })
    ));
    assert_eq!(rig.smmu.hw_info(), Smmuv3Caps::default().idr());
    // Usable as any other back-end: behind a trait object, shared across threads.
    let backend: std::sync::Arc<dyn NestedHostIommu> = std::sync::Arc::new(rig.smmu);
    std::thread::spawn(move || backend.remove_ste(SID).unwrap())
        .join()
        .unwrap();
}

#[test]
fn invalidations_take_the_host_vmid_and_stop_at_foreign_commands() {
    let rig = Rig::new();
    let (cd_ipa, root) = guest(&rig, CdFields::default());
    rig.smmu.install_ste(SID, vste(0b101, cd_ipa)).unwrap();
    assert_eq!(rig.read(SID, 0x1000).unwrap(), 0x5000 + OFFSET);
    map_at(&rig, 12, OFFSET, root, 0, 0x1000, 3, s1_page(0x6000));
    // The guest's VMID (0) is replaced by the host's (7).
    rig.smmu
        .invalidate(&[cmd::tlbi_nh_va(0, 1, 0x1000)])
        .unwrap();
    assert_eq!(rig.read(SID, 0x1000).unwrap(), 0x6000 + OFFSET);
    let err = rig
        .smmu
        .invalidate(&[
            cmd::tlbi_nsnh_all(),
            cmd::cfgi_cd_all(SID),
            cmd::cfgi_ste(SID),
        ])
        .unwrap_err();
    assert_eq!((err.done, err.opcode), (2, 0x03));
}

#[test]
fn events_reach_the_relay_with_losses_counted() {
    let rig = Rig::with_caps(Smmuv3Caps {
        event_queue_depth: 1,
        ..Smmuv3Caps::default()
    });
    let (cd_ipa, _) = guest(&rig, CdFields::default());
    rig.smmu.install_ste(SID, vste(0b101, cd_ipa)).unwrap();
    let fds = rig.smmu.fault_notifiers();
    assert!(!readable(fds.events));
    for a in [0x10_0000, 0x20_0000, 0x30_0000] {
        rig.read(SID, a).unwrap_err();
    }
    assert!(readable(fds.events));
    let events = rig.smmu.read_events(8).unwrap();
    assert!(!readable(fds.events));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].lost_before, 0);
    let e = events[0].record;
    assert_eq!(
        (e.id(), e.sid(), e.input_address()),
        (event_id::F_TRANSLATION, SID, 0x10_0000)
    );
    rig.read(SID, 0x40_0000).unwrap_err();
    let events = rig.smmu.read_events(8).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].lost_before, 2);
    assert_eq!(events[0].record.input_address(), 0x40_0000);
}

#[test]
fn stalls_become_page_requests_and_responses_resume_them() {
    let rig = Rig::new();
    let (cd_ipa, root) = guest(
        &rig,
        CdFields {
            stall: true,
            ..CdFields::default()
        },
    );
    rig.smmu.install_ste(SID, vste(0b101, cd_ipa)).unwrap();
    let fault = rig.translate(SID, None, 0x9000, Access::WRITE).unwrap_err();
    let Termination::Stalled { stag } = fault.termination else {
        panic!("not stalled: {fault:?}");
    };
    assert!(readable(rig.smmu.fault_notifiers().page_requests));
    assert!(
        rig.smmu.read_events(8).unwrap().is_empty(),
        "stalls are not vEVENTs"
    );
    let requests = rig.smmu.read_page_requests(8).unwrap();
    assert_eq!(requests.len(), 1);
    let r = requests[0];
    assert_eq!(
        (r.stream, r.pasid, r.group, r.address, r.last),
        (SID, None, stag.into(), 0x9000, true)
    );
    assert!(r.permissions.write && !r.permissions.read);
    map_at(&rig, 12, OFFSET, root, 0, 0x9000, 3, s1_page(0x7000));
    rig.smmu
        .page_response(r.cookie, PageResponseCode::Success)
        .unwrap();
    assert_eq!(rig.smmu.stall_outcome(SID, stag), Some(StallState::Retry));
    assert!(matches!(
        rig.smmu.page_response(r.cookie, PageResponseCode::Success),
        Err(NestedError::UnknownCookie(_))
    ));
    assert_eq!(rig.read(SID, 0x9010).unwrap(), 0x7010 + OFFSET);

    // Replacing the STE fails what is still waiting.
    let fault = rig.translate(SID, None, 0xa000, Access::READ).unwrap_err();
    let Termination::Stalled { stag } = fault.termination else {
        panic!("not stalled: {fault:?}");
    };
    let cookie = rig.smmu.read_page_requests(8).unwrap()[0].cookie;
    rig.smmu.install_ste(SID, vste(0b101, cd_ipa)).unwrap();
    assert_eq!(
        rig.smmu.stall_outcome(SID, stag),
        Some(StallState::Terminated)
    );
    assert!(rig
        .smmu
        .page_response(cookie, PageResponseCode::Success)
        .is_err());
}

#[test]
fn pci_page_requests_get_their_answer() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 0x10000)]).unwrap();
    let recorder = Arc::new(Recorder::default());
    let smmu = Smmuv3::new(mem, Smmuv3Caps::default())
        .unwrap()
        .with_notifier(recorder.clone());
    smmu.page_request(PriEntry::new(
        SID,
        Some(3),
        0x4000,
        0x11,
        true,
        false,
        false,
    ));
    smmu.page_request(PriEntry::new(SID, Some(3), 0x5000, 0x11, true, false, true));
    let requests = smmu.read_page_requests(8).unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].cookie, requests[1].cookie,
        "one group, one cookie"
    );
    assert!(requests[1].last && !requests[0].last);
    assert_eq!((requests[1].pasid, requests[1].address), (Some(3), 0x5000));
    smmu.page_response(requests[1].cookie, PageResponseCode::Invalid)
        .unwrap();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![DeviceEffect::PageResponse {
            sid: SID,
            ssid: Some(3),
            group: 0x11,
            response: PriResponse::Deny
        }]
    );
}

#[test]
fn cookies_answered_by_commands_are_forgotten() {
    let caps = Smmuv3Caps {
        max_stalls: 1,
        pri_queue_depth: 1,
        ..Smmuv3Caps::default()
    };
    let rig = Rig::with_caps(caps);
    let (cd_ipa, _) = guest(
        &rig,
        CdFields {
            stall: true,
            ..CdFields::default()
        },
    );
    rig.smmu.install_ste(SID, vste(0b101, cd_ipa)).unwrap();
    for i in 0..20u64 {
        let Termination::Stalled { stag } = rig
            .read(SID, 0x10_0000 + (i << 12))
            .unwrap_err()
            .termination
        else {
            panic!("not stalled");
        };
        assert_eq!(rig.smmu.read_page_requests(8).unwrap().len(), 1);
        // Answered by the guest's own RESUME, not through page_response.
        rig.smmu.execute(&[cmd::resume(SID, stag, false)]).unwrap();
        assert_eq!(
            rig.smmu.stall_outcome(SID, stag),
            Some(StallState::Terminated)
        );
    }
    assert!(rig.smmu.cookies_held() <= 2, "{}", rig.smmu.cookies_held());
}
