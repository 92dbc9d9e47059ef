//! Recording (CD.R, STE.S2R), termination (CD.A), stalls and their answers, the event
//! queue's overflow and the PRI queue.

use std::sync::Arc;

use super::encode::*;
use super::tlb_commands::Recorder;
use super::*;
use crate::host_iommu::smmuv3::wire::{event_id, PriEntry};
use crate::host_iommu::smmuv3::{DeviceEffect, PriResponse, StallState, Termination};

fn rig_with_recorder(caps: Smmuv3Caps) -> (Rig, Arc<Recorder>) {
    let mut rig = Rig::with_caps(caps);
    let recorder = Arc::new(Recorder::default());
    rig.smmu = Smmuv3::new(rig.mem.clone(), caps)
        .unwrap()
        .with_notifier(recorder.clone());
    (rig, recorder)
}

#[test]
fn record_and_abort_follow_the_cd() {
    let rig = Rig::new();
    stage1_stream(
        &rig,
        0,
        CdFields {
            record: false,
            abort: false,
            ..CdFields::default()
        },
    );
    let f = rig.read(0, 0x1000).unwrap_err();
    assert_eq!(f.event_id(), Some(event_id::F_TRANSLATION));
    assert!(!f.recorded);
    assert_eq!(f.termination, Termination::ReadZeroWriteIgnore);
    assert!(rig.smmu.pop_event().is_none());

    let rig = Rig::new();
    stage1_stream(&rig, 0, CdFields::default());
    let f = rig
        .translate(
            0,
            None,
            0x1234,
            Access {
                privileged: true,
                instruction: true,
                write: false,
            },
        )
        .unwrap_err();
    assert!(f.recorded);
    assert_eq!(f.termination, Termination::Abort);
    let e = rig.smmu.pop_event().unwrap();
    assert_eq!(
        (e.id(), e.sid(), e.input_address()),
        (event_id::F_TRANSLATION, 0, 0x1234)
    );
    assert!(e.read() && e.privileged() && e.instruction() && !e.stage2() && !e.stall());
    assert_eq!(e.class(), 2);
}

#[test]
fn stage2_faults_are_recorded_only_with_s2r() {
    for record in [false, true] {
        let rig = Rig::new();
        let table = rig.linear_stream_table(4);
        let s2 = S2Fields {
            ttb: rig.page(),
            record,
            ..S2Fields::default()
        };
        rig.write_all(
            table,
            &SteFields {
                s2: Some(s2),
                ..SteFields::with_config(0b110)
            }
            .encode(),
        );
        let f = rig.read(0, 0x1000).unwrap_err();
        assert_eq!(f.recorded, record);
        assert_eq!(rig.smmu.pop_event().is_some(), record);
    }
}

#[test]
fn a_stalled_transaction_waits_for_resume() {
    let (rig, recorder) = rig_with_recorder(Smmuv3Caps::default());
    let s = stage1_stream(
        &rig,
        2,
        CdFields {
            stall: true,
            record: false,
            ..CdFields::default()
        },
    );
    let f = rig.translate(2, None, 0x7000, Access::WRITE).unwrap_err();
    let Termination::Stalled { stag } = f.termination else {
        panic!("not stalled: {f:?}");
    };
    let e = rig
        .smmu
        .pop_event()
        .expect("stalls are recorded even with R = 0");
    assert!(e.stall());
    assert_eq!((e.stag(), e.id()), (stag, event_id::F_TRANSLATION));
    assert_eq!(rig.smmu.stall_outcome(2, stag), Some(StallState::Waiting));
    // Software maps the page and resumes; a RESUME for another stream does nothing.
    map(&rig, s.root, 0, 0x7000, 3, s1_page(0x8000));
    rig.smmu.execute(&[cmd::resume(3, stag, true)]).unwrap();
    assert_eq!(rig.smmu.stall_outcome(2, stag), Some(StallState::Waiting));
    rig.smmu.execute(&[cmd::resume(2, stag, true)]).unwrap();
    assert_eq!(rig.smmu.stall_outcome(2, stag), Some(StallState::Retry));
    assert_eq!(rig.smmu.stall_outcome(2, stag), None, "answered once");
    assert_eq!(
        rig.translate(2, None, 0x7000, Access::WRITE)
            .unwrap()
            .output_of(0x7008),
        0x8008
    );
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![DeviceEffect::StallResolved {
            sid: 2,
            stag,
            retry: true
        }]
    );
}

#[test]
fn stall_term_and_abort_end_stalls_and_stall_max_bounds_them() {
    let caps = Smmuv3Caps {
        max_stalls: 2,
        ..Smmuv3Caps::default()
    };
    let rig = Rig::with_caps(caps);
    stage1_stream(
        &rig,
        1,
        CdFields {
            stall: true,
            ..CdFields::default()
        },
    );
    let stag = |a| match rig.read(1, a).unwrap_err().termination {
        Termination::Stalled { stag } => Some(stag),
        _ => None,
    };
    let a = stag(0x1000).unwrap();
    let b = stag(0x2000).unwrap();
    assert_eq!(stag(0x3000), None, "STALL_MAX reached: terminated instead");
    rig.smmu.execute(&[cmd::resume(1, a, false)]).unwrap();
    rig.smmu.execute(&[cmd::stall_term(1)]).unwrap();
    assert_eq!(rig.smmu.stall_outcome(1, a), Some(StallState::Terminated));
    assert_eq!(rig.smmu.stall_outcome(1, b), Some(StallState::Terminated));
    assert!(stag(0x4000).is_some(), "tags are free again");
}

#[test]
fn s1stalld_with_a_stalling_cd_is_a_bad_cd() {
    let rig = Rig::new();
    let table = rig.linear_stream_table(4);
    let cd = rig.alloc(64);
    rig.write_all(
        cd,
        &CdFields {
            stall: true,
            ttb0: rig.page(),
            ..CdFields::default()
        }
        .encode(),
    );
    rig.write_all(
        table,
        &SteFields {
            s1_stalld: true,
            ..SteFields::stage1(cd)
        }
        .encode(),
    );
    assert_eq!(rig.read_fault(0, 0), Some(event_id::C_BAD_CD));
}

#[test]
fn a_full_event_queue_counts_what_it_drops() {
    let rig = Rig::with_caps(Smmuv3Caps {
        event_queue_depth: 2,
        ..Smmuv3Caps::default()
    });
    stage1_stream(&rig, 0, CdFields::default());
    let recorded: Vec<bool> = (0..5)
        .map(|i| rig.read(0, i << 12).unwrap_err().recorded)
        .collect();
    assert_eq!(recorded, [true, true, false, false, false]);
    assert_eq!(rig.smmu.event_overflows(), 3);
    assert_eq!(rig.smmu.pop_event().unwrap().input_address(), 0);
    assert_eq!(rig.smmu.pop_event().unwrap().input_address(), 0x1000);
    assert!(rig.smmu.pop_event().is_none());
}

#[test]
fn page_requests_queue_and_are_answered_once() {
    let caps = Smmuv3Caps {
        pri_queue_depth: 1,
        ..Smmuv3Caps::default()
    };
    let (rig, recorder) = rig_with_recorder(caps);
    rig.smmu
        .page_request(PriEntry::new(4, None, 0x5000, 9, true, false, true));
    rig.smmu
        .page_request(PriEntry::new(5, None, 0x6000, 3, true, true, true));
    assert_eq!(rig.smmu.pri_overflows(), 1);
    let e = rig.smmu.pop_page_request().unwrap();
    assert_eq!((e.sid(), e.address(), e.group()), (4, 0x5000, 9));
    rig.smmu
        .execute(&[cmd::pri_resp(4, 9, 2), cmd::pri_resp(4, 9, 2)])
        .unwrap();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            DeviceEffect::PageResponse {
                sid: 5,
                ssid: None,
                group: 3,
                response: PriResponse::Fail
            },
            DeviceEffect::PageResponse {
                sid: 4,
                ssid: None,
                group: 9,
                response: PriResponse::Success
            },
        ]
    );
}
