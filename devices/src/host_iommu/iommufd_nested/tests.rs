use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use super::*;
use crate::host_iommu::iommufd_smmuv3::{HostCommandFeatures, Smmuv3Format};
use crate::host_iommu::smmuv3::wire::opcode;

pub(super) type Log = Arc<Mutex<Vec<String>>>;

fn record(log: &Log, entry: String) {
    log.lock().unwrap().push(entry);
}

/// Hands out ids from 100 and records every call; `invalidate` handles at most
/// `handle_at_most` entries and then fails as the kernel does.
#[derive(Debug)]
pub(super) struct FakeObjects {
    log: Log,
    next_id: Mutex<u32>,
    handle_at_most: u32,
    refuse_viommu: bool,
    /// The write end of the last vEVENTQ's pipe: what the kernel would report.
    vevents: Arc<Mutex<Option<File>>>,
}

impl FakeObjects {
    pub(super) fn new(log: &Log) -> Self {
        Self {
            log: log.clone(),
            next_id: Mutex::new(100),
            handle_at_most: u32::MAX,
            refuse_viommu: false,
            vevents: Arc::default(),
        }
    }

    fn id(&self) -> u32 {
        let mut next = self.next_id.lock().unwrap();
        *next += 1;
        *next - 1
    }
}

impl IommufdObjects for FakeObjects {
    fn alloc_nest_parent(&self, dev_id: u32, ioas_id: u32) -> io::Result<u32> {
        let id = self.id();
        record(
            &self.log,
            format!("parent {id} dev {dev_id} ioas {ioas_id}"),
        );
        Ok(id)
    }

    fn alloc_viommu(&self, viommu_type: u32, dev_id: u32, parent_id: u32) -> io::Result<u32> {
        if self.refuse_viommu {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let id = self.id();
        record(
            &self.log,
            format!("viommu {id} type {viommu_type} dev {dev_id} parent {parent_id}"),
        );
        Ok(id)
    }

    fn alloc_vdevice(&self, viommu_id: u32, dev_id: u32, virt_id: u64) -> io::Result<u32> {
        let id = self.id();
        record(
            &self.log,
            format!("vdevice {id} viommu {viommu_id} dev {dev_id} virt {virt_id:#x}"),
        );
        Ok(id)
    }

    fn alloc_nested_hwpt(
        &self,
        dev_id: u32,
        viommu_id: u32,
        data_type: u32,
        data: &[u8],
        fault_id: Option<u32>,
    ) -> io::Result<u32> {
        let id = self.id();
        let fault = fault_id.map_or(String::new(), |f| format!(" fault {f}"));
        record(
            &self.log,
            format!(
                "hwpt {id} dev {dev_id} viommu {viommu_id} type {data_type} data {:02x}{fault}",
                data[0]
            ),
        );
        Ok(id)
    }

    fn invalidate(
        &self,
        viommu_id: u32,
        data_type: u32,
        entry_len: u32,
        entries: &[u8],
    ) -> (u32, Option<io::Error>) {
        let sent = (entries.len() / entry_len as usize) as u32;
        record(
            &self.log,
            format!("invalidate viommu {viommu_id} type {data_type} entries {sent}"),
        );
        if sent > self.handle_at_most {
            return (
                self.handle_at_most,
                Some(io::Error::from_raw_os_error(libc::EIO)),
            );
        }
        (sent, None)
    }

    fn alloc_fault_queue(&self) -> io::Result<(u32, File)> {
        let id = self.id();
        record(&self.log, format!("fault queue {id}"));
        Ok((id, empty_fd()))
    }

    fn alloc_veventq(
        &self,
        viommu_id: u32,
        veventq_type: u32,
        depth: u32,
    ) -> io::Result<(u32, File)> {
        let id = self.id();
        record(
            &self.log,
            format!("veventq {id} viommu {viommu_id} type {veventq_type} depth {depth}"),
        );
        let (reader, writer) = pipe();
        *self.vevents.lock().unwrap() = Some(writer);
        Ok((id, reader))
    }

    fn destroy(&self, id: u32) -> io::Result<()> {
        record(&self.log, format!("destroy {id}"));
        Ok(())
    }
}

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
        0
    );
    // SAFETY: both descriptors were just created and are owned here only.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// The read end of a pipe whose write end is closed: reads give 0 bytes, like an empty
/// fault queue.
fn empty_fd() -> File {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned here only.
    unsafe {
        drop(OwnedFd::from_raw_fd(fds[1]));
        File::from(OwnedFd::from_raw_fd(fds[0]))
    }
}

#[derive(Debug)]
pub(super) struct FakeEndpoint {
    log: Log,
    dev_id: u32,
}

impl NestedEndpoint for FakeEndpoint {
    fn dev_id(&self) -> u32 {
        self.dev_id
    }

    fn attach(&self, pt_id: u32) -> io::Result<()> {
        record(&self.log, format!("attach dev {} to {pt_id}", self.dev_id));
        Ok(())
    }
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        record(&self.log, format!("close dev {}", self.dev_id));
    }
}

pub(super) const FORMAT: Smmuv3Format = Smmuv3Format {
    features: HostCommandFeatures {
        asid_bits: 16,
        ssid_bits: 20,
        ats: true,
        range_invalidation: true,
        ds: true,
    },
    guest_idr: [0; 6],
};
const S1_STE: [u64; 2] = [1 | 0b101 << 1 | 0x8000_0000, 0];

pub(super) fn endpoint(log: &Log, dev_id: u32) -> Box<FakeEndpoint> {
    Box::new(FakeEndpoint {
        log: log.clone(),
        dev_id,
    })
}

/// A vIOMMU with the endpoint dev 7 at guest StreamID 0x10; the log starts empty.
fn nested(log: &Log, objects: FakeObjects) -> IommufdNested<Smmuv3Format, FakeObjects> {
    let first = endpoint(log, 7);
    let nested = IommufdNested::new(FORMAT, objects, first.as_ref(), 3).unwrap();
    nested.add_endpoint(0x10, first).unwrap();
    log.lock().unwrap().clear();
    nested
}

pub(super) fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[test]
fn setup_makes_parent_viommu_then_a_vdevice_per_endpoint() {
    let log = Log::default();
    let first = endpoint(&log, 7);
    let nested = IommufdNested::new(FORMAT, FakeObjects::new(&log), first.as_ref(), 3).unwrap();
    nested.add_endpoint(0x10, first).unwrap();
    assert_eq!(
        take(&log),
        [
            "parent 100 dev 7 ioas 3",
            "viommu 101 type 1 dev 7 parent 100",
            "vdevice 102 viommu 101 dev 7 virt 0x10",
            "attach dev 7 to 100",
        ]
    );
    assert!(matches!(
        nested.add_endpoint(0x10, endpoint(&log, 8)),
        Err(NestedSetupError::DuplicateStream(0x10))
    ));
    assert_eq!(
        take(&log),
        ["close dev 8"],
        "no kernel call for a duplicate"
    );
}

#[test]
fn a_refused_viommu_leaves_no_parent_behind() {
    let log = Log::default();
    let objects = FakeObjects {
        refuse_viommu: true,
        ..FakeObjects::new(&log)
    };
    let first = endpoint(&log, 7);
    let err = IommufdNested::new(FORMAT, objects, first.as_ref(), 3).unwrap_err();
    assert!(
        err.to_string().starts_with("IOMMU_VIOMMU_ALLOC failed"),
        "{err}"
    );
    assert_eq!(take(&log), ["parent 100 dev 7 ioas 3", "destroy 100"]);
}

#[test]
fn a_new_ste_is_a_new_hwpt_attached_by_replacement() {
    let log = Log::default();
    let nested = nested(&log, FakeObjects::new(&log));
    nested.install_ste(0x10, S1_STE).unwrap();
    assert_eq!(
        take(&log),
        [
            "hwpt 103 dev 7 viommu 101 type 2 data 0b",
            "attach dev 7 to 103"
        ]
    );
    nested.install_ste(0x10, [1 | 0b100 << 1, 0]).unwrap();
    assert_eq!(
        take(&log),
        [
            "hwpt 104 dev 7 viommu 101 type 2 data 09",
            "attach dev 7 to 104",
            "destroy 103"
        ],
        "the old HWPT goes only once the device has left it"
    );
    nested.remove_ste(0x10).unwrap();
    assert_eq!(
        take(&log),
        [
            "hwpt 105 dev 7 viommu 101 type 2 data 01",
            "attach dev 7 to 105",
            "destroy 104"
        ],
        "removed: an abort STE"
    );
    assert_eq!(nested.endpoint_objects(0x10), Some((102, Some(105))));
}

#[test]
fn hostile_stes_and_unknown_streams_reach_no_kernel_call() {
    let log = Log::default();
    let nested = nested(&log, FakeObjects::new(&log));
    assert!(matches!(
        nested.install_ste(0x10, [1 | 0b110 << 1, 0]),
        Err(NestedError::IllegalSte { stream: 0x10, .. })
    ));
    assert!(matches!(
        nested.install_ste(0x99, S1_STE),
        Err(NestedError::IllegalSte { stream: 0x99, .. })
    ));
    assert!(nested.remove_ste(0x99).is_err());
    assert_eq!(take(&log), Vec::<String>::new());
}

#[test]
fn invalidation_checks_the_count_the_kernel_reports() {
    let log = Log::default();
    let objects = FakeObjects {
        handle_at_most: 2,
        ..FakeObjects::new(&log)
    };
    let nested = nested(&log, objects);
    let cd = |sid: u64| Command([u64::from(opcode::CFGI_CD_ALL) | sid << 32, 0]);
    let asid = Command([u64::from(opcode::TLBI_NH_ASID) | 5 << 48, 0]);
    nested.invalidate(&[cd(0x10), asid]).unwrap();
    assert_eq!(take(&log), ["invalidate viommu 101 type 1 entries 2"]);
    let err = nested.invalidate(&[cd(0x10), asid, cd(0x11)]).unwrap_err();
    assert_eq!(
        (err.done, err.opcode),
        (2, opcode::CFGI_CD_ALL),
        "the kernel stopped at the third"
    );
    let sync = Command([u64::from(opcode::SYNC), 0]);
    let err = nested.invalidate(&[asid, sync, asid]).unwrap_err();
    assert_eq!((err.done, err.opcode), (1, opcode::SYNC));
    assert_eq!(
        take(&log)[1],
        "invalidate viommu 101 type 1 entries 1",
        "what comes before a refused command still goes"
    );
    let err = nested.invalidate(&[sync]).unwrap_err();
    assert_eq!((err.done, err.opcode), (0, opcode::SYNC));
    assert_eq!(take(&log), Vec::<String>::new(), "nothing to send");
    nested.invalidate(&[]).unwrap();
}

#[test]
fn teardown_follows_the_kernels_order() {
    let log = Log::default();
    let nested = nested(&log, FakeObjects::new(&log));
    nested.add_endpoint(0x20, endpoint(&log, 8)).unwrap();
    nested.install_ste(0x10, S1_STE).unwrap();
    take(&log);
    drop(nested);
    assert_eq!(
        take(&log),
        [
            "attach dev 7 to 100",
            "destroy 104",
            "destroy 102",
            "close dev 7",
            "destroy 103",
            "close dev 8",
            "destroy 101",
            "destroy 100",
        ],
        "devices leave their nested HWPT, vDEVICEs go before the devices close, the \
         vIOMMU before the parent"
    );
}

#[test]
fn a_removed_endpoint_is_released_before_it_is_handed_back() {
    let log = Log::default();
    let nested = nested(&log, FakeObjects::new(&log));
    nested.install_ste(0x10, S1_STE).unwrap();
    take(&log);
    let device = nested.remove_endpoint(0x10).unwrap();
    assert_eq!(
        take(&log),
        ["attach dev 7 to 100", "destroy 103", "destroy 102"]
    );
    drop(device);
    assert!(nested.remove_endpoint(0x10).is_none());
    assert!(nested.install_ste(0x10, S1_STE).is_err());
}

#[test]
fn fault_sources_go_after_the_hwpts_that_use_them_and_before_the_viommu() {
    let log = Log::default();
    let first = endpoint(&log, 7);
    let nested = IommufdNested::new(FORMAT, FakeObjects::new(&log), first.as_ref(), 3)
        .unwrap()
        .with_page_requests()
        .unwrap()
        .with_events(8)
        .unwrap();
    nested.add_endpoint(0x10, first).unwrap();
    nested.install_ste(0x10, S1_STE).unwrap();
    assert_eq!(
        take(&log)[2..],
        [
            "fault queue 102",
            "veventq 103 viommu 101 type 1 depth 8",
            "vdevice 104 viommu 101 dev 7 virt 0x10",
            "attach dev 7 to 100",
            "hwpt 105 dev 7 viommu 101 type 2 data 0b fault 102",
            "attach dev 7 to 105",
        ],
        "every nested HWPT reports its page requests to the fault queue"
    );
    drop(nested);
    assert_eq!(
        take(&log),
        [
            "attach dev 7 to 100",
            "destroy 105",
            "destroy 104",
            "close dev 7",
            "destroy 102",
            "destroy 103",
            "destroy 101",
            "destroy 100",
        ]
    );
}

#[test]
fn a_lost_events_marker_is_reported_with_the_next_event() {
    use crate::host_iommu::iommufd_faults::VEVENT_LOST_EVENTS;
    use crate::host_iommu::iommufd_selftest::SelftestFormat;
    use crate::host_iommu::nested::NestedHostIommu;
    use std::io::Write;

    let log = Log::default();
    let objects = FakeObjects::new(&log);
    let kernel = objects.vevents.clone();
    let first = endpoint(&log, 7);
    let nested = IommufdNested::new(SelftestFormat, objects, first.as_ref(), 3)
        .unwrap()
        .with_events(2)
        .unwrap();
    let event = |flags: u32, sequence: u32, virt_id: Option<u32>| {
        let mut b = [flags.to_le_bytes(), sequence.to_le_bytes()].concat();
        if let Some(v) = virt_id {
            b.extend_from_slice(&v.to_le_bytes());
        }
        kernel
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .write_all(&b)
            .unwrap();
    };
    event(0, 0, Some(0x10));
    event(0, 1, Some(0x10));
    event(VEVENT_LOST_EVENTS, 2, None);
    let events = nested.read_events(8).unwrap();
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|e| e.lost_before == 0 && e.record.sid() == 0x10));
    event(0, 7, Some(0x20));
    // A gap after a known sequence number counts exactly.
    event(0, 10, Some(0x20));
    let events = nested.read_events(8).unwrap();
    assert_eq!(
        events.iter().map(|e| e.lost_before).collect::<Vec<_>>(),
        [1, 2],
        "the marker's loss comes with the next event; 8 and 9 were lost"
    );
    assert!(nested.read_events(8).unwrap().is_empty());
}
