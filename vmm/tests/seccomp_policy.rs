//! The seccomp policies as data: the numbers they hard-code (ioctls, signals) are the ones
//! nestor really uses, and each thread's hot path comes first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kvm_bindings::*;
use serde_json::Value;
use vmm::seccomp::ThreadKind;
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

const KVMIO: u32 = 0xae;

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_mp_state);
ioctl_iow_nr!(KVM_IRQ_LINE, KVMIO, 0x61, kvm_irq_level);
ioctl_iowr_nr!(KVM_IRQ_LINE_STATUS, KVMIO, 0x67, kvm_irq_level);
ioctl_iow_nr!(KVM_SET_GSI_ROUTING, KVMIO, 0x6a, kvm_irq_routing);
ioctl_iow_nr!(KVM_IRQFD, KVMIO, 0x76, kvm_irqfd);
ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_ioeventfd);
ioctl_iow_nr!(KVM_SIGNAL_MSI, KVMIO, 0xa5, kvm_msi);
ioctl_iow_nr!(
    KVM_SET_USER_MEMORY_REGION,
    KVMIO,
    0x46,
    kvm_userspace_memory_region
);
/// VFIO's ioctls are `_IO(';', 100 + n)`.
const VFIO_TYPE: u32 = b';' as u32;
ioctl_io_nr!(VFIO_DEVICE_SET_IRQS, VFIO_TYPE, 100 + 10);
ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, 100 + 13);
ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, 100 + 14);
ioctl_io_nr!(VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_TYPE, 100 + 19);
// iommufd's are `_IO(';', 0x80 + n)`, n following `enum iommufd_cmd`.
ioctl_io_nr!(IOMMU_IOAS_MAP, VFIO_TYPE, 0x85);
ioctl_io_nr!(IOMMU_IOAS_UNMAP, VFIO_TYPE, 0x86);
ioctl_io_nr!(IOMMU_DESTROY, VFIO_TYPE, 0x80);
ioctl_io_nr!(IOMMU_HWPT_ALLOC, VFIO_TYPE, 0x89);
ioctl_io_nr!(IOMMU_HWPT_INVALIDATE, VFIO_TYPE, 0x8d);

/// Every ioctl a policy may name, by the name its rule's comment starts with.
fn known_ioctls() -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("KVM_RUN", KVM_RUN()),
        ("KVM_GET_REGS", KVM_GET_REGS()),
        ("KVM_GET_SREGS", KVM_GET_SREGS()),
        ("KVM_GET_MP_STATE", KVM_GET_MP_STATE()),
        ("KVM_IRQ_LINE", KVM_IRQ_LINE()),
        ("KVM_IRQ_LINE_STATUS", KVM_IRQ_LINE_STATUS()),
        ("KVM_SET_GSI_ROUTING", KVM_SET_GSI_ROUTING()),
        ("KVM_IRQFD", KVM_IRQFD()),
        ("KVM_IOEVENTFD", KVM_IOEVENTFD()),
        ("KVM_SIGNAL_MSI", KVM_SIGNAL_MSI()),
        ("KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION()),
        ("VFIO_DEVICE_SET_IRQS", VFIO_DEVICE_SET_IRQS()),
        ("VFIO_IOMMU_MAP_DMA", VFIO_IOMMU_MAP_DMA()),
        ("VFIO_IOMMU_UNMAP_DMA", VFIO_IOMMU_UNMAP_DMA()),
        ("IOMMU_IOAS_MAP", IOMMU_IOAS_MAP()),
        ("IOMMU_IOAS_UNMAP", IOMMU_IOAS_UNMAP()),
        (
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            VFIO_DEVICE_ATTACH_IOMMUFD_PT(),
        ),
        ("IOMMU_DESTROY", IOMMU_DESTROY()),
        ("IOMMU_HWPT_ALLOC", IOMMU_HWPT_ALLOC()),
        ("IOMMU_HWPT_INVALIDATE", IOMMU_HWPT_INVALIDATE()),
        ("TCGETS", libc::TCGETS),
        ("TCSETS", libc::TCSETS),
        ("FIONBIO", libc::FIONBIO),
    ])
}

fn policy_rules(kind: ThreadKind) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../resources/seccomp")
        .join(format!("{}.json", kind.name()));
    let text = std::fs::read_to_string(&path).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    policy[kind.name()]["filter"].as_array().unwrap().clone()
}

/// The conditions of `rule` on argument `index`.
fn conditions_on(rule: &Value, index: u64) -> Vec<&Value> {
    rule["args"]
        .as_array()
        .map(|args| args.iter().filter(|c| c["index"] == index).collect())
        .unwrap_or_default()
}

/// The name a condition's comment gives, up to the first colon.
fn named(condition: &Value) -> &str {
    let comment = condition["comment"].as_str().unwrap_or("");
    comment.split(':').next().unwrap().trim()
}

#[test]
fn ioctl_numbers_match_their_names() {
    let known = known_ioctls();
    for kind in ThreadKind::ALL {
        for rule in policy_rules(kind)
            .iter()
            .filter(|r| r["syscall"] == "ioctl")
        {
            let requests = conditions_on(rule, 1);
            assert_eq!(requests.len(), 1, "{}: {rule}", kind.name());
            let name = named(requests[0]);
            let expected = known
                .get(name)
                .unwrap_or_else(|| panic!("{}: unknown ioctl {name:?}", kind.name()));
            assert_eq!(requests[0]["val"], *expected, "{}: {name}", kind.name());
        }
    }
}

#[test]
fn the_kick_signal_is_the_one_nestor_sends() {
    let kick = u64::try_from(vmm_sys_util::signal::SIGRTMIN()).unwrap();
    let rules = policy_rules(ThreadKind::Vmm);
    let allowed: Vec<&Value> = rules
        .iter()
        .filter(|r| r["syscall"] == "tgkill")
        .flat_map(|r| conditions_on(r, 2))
        .filter(|c| named(c) == "SIGRTMIN")
        .collect();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["val"], kick);
}

#[test]
fn hot_path_rules_come_first() {
    let first_rule = |kind| policy_rules(kind)[0].clone();
    let vcpu = first_rule(ThreadKind::Vcpu);
    assert_eq!(vcpu["syscall"], "ioctl");
    assert_eq!(named(conditions_on(&vcpu, 1)[0]), "KVM_RUN");
    for kind in [
        ThreadKind::Vmm,
        ThreadKind::DeviceWorker,
        ThreadKind::FaultRelay,
    ] {
        assert_eq!(first_rule(kind)["syscall"], "epoll_wait", "{}", kind.name());
    }
    assert_eq!(first_rule(ThreadKind::HostOutput)["syscall"], "write");
    assert_eq!(first_rule(ThreadKind::Api)["syscall"], "poll");
}

/// seccompiler drops a rule without conditions from a syscall that also has conditional
/// rules, which would silently narrow what the policy meant to allow.
#[test]
fn no_syscall_is_both_unconditional_and_conditional() {
    for kind in ThreadKind::ALL {
        let rules = policy_rules(kind);
        for rule in rules.iter().filter(|r| r["args"].is_null()) {
            let conditional = rules
                .iter()
                .filter(|r| r["syscall"] == rule["syscall"] && !r["args"].is_null())
                .count();
            assert_eq!(conditional, 0, "{}: {}", kind.name(), rule["syscall"]);
        }
    }
}

/// tgkill names any process: only the main thread may send, and only the vCPU kick. A panic
/// in a filtered thread still ends nestor (abort's SIGABRT is refused, which kills it).
#[test]
fn only_the_main_thread_signals_and_only_the_kick() {
    for kind in ThreadKind::ALL {
        let signals: Vec<String> = policy_rules(kind)
            .iter()
            .filter(|r| r["syscall"] == "tgkill")
            .flat_map(|r| conditions_on(r, 2))
            .map(|c| named(c).to_string())
            .collect();
        let expected: Vec<String> = match kind {
            ThreadKind::Vmm => vec!["SIGRTMIN".to_string()],
            _ => Vec::new(),
        };
        assert_eq!(signals, expected, "{}", kind.name());
    }
}

/// A device worker adds its own fds to its own epoll set and drops console input at EOF:
/// EPOLL_CTL_ADD and EPOLL_CTL_DEL, never MOD, and only with those conditions.
#[test]
fn device_workers_only_add_and_delete_epoll_entries() {
    let rules = policy_rules(ThreadKind::DeviceWorker);
    let epoll_ctl: Vec<&Value> = rules
        .iter()
        .filter(|r| r["syscall"] == "epoll_ctl")
        .collect();
    let mut ops: Vec<u64> = epoll_ctl
        .iter()
        .map(|r| {
            let conditions = conditions_on(r, 1);
            assert_eq!(conditions.len(), 1, "{r}");
            conditions[0]["val"].as_u64().unwrap()
        })
        .collect();
    ops.sort_unstable();
    assert_eq!(ops, vec![1, 2]);
}

/// The API thread serves one socket it was handed: it may accept on it and remove its file,
/// but open, bind or connect nothing.
#[test]
fn the_api_thread_opens_no_socket_or_file() {
    let names: Vec<String> = policy_rules(ThreadKind::Api)
        .iter()
        .map(|r| r["syscall"].as_str().unwrap().to_string())
        .collect();
    for forbidden in [
        "socket", "bind", "listen", "connect", "open", "openat", "unlinkat",
    ] {
        assert!(
            !names.iter().any(|n| n == forbidden),
            "api allows {forbidden}"
        );
    }
    assert!(names.iter().any(|n| n == "accept4"));
}
