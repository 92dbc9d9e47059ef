//! What each path does. Handlers run on the API thread and never wait on the guest: pause
//! waits for the vCPUs to park, bounded; stop asks the VM to end, shutdown presses the
//! power button and leaves the deadline to the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::legacy::PowerButton;
use devices::{VmControl, VmExitReason};
use serde::Deserialize;
use serde_json::json;

use super::http::{Request, Response};
use super::metrics::{self, CountedDevice};
use crate::event_loop::KickRequest;
use crate::vcpu::{ExitCounters, PauseGate};
use crate::viommu::IommuCounterSource;

/// How long a pause waits for every vCPU to leave the guest and park.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// A kick can land just before KVM_RUN and be lost: kick again this often.
const KICK_INTERVAL: Duration = Duration::from_millis(5);
pub const DEFAULT_SHUTDOWN_DEADLINE_MS: u64 = 5000;
/// An hour: a larger deadline is more likely a unit mistake than a wish.
const MAX_SHUTDOWN_DEADLINE_MS: u64 = 3_600_000;

/// The VM as the API sees it.
pub struct ApiVm {
    pub control: VmControl,
    pub pause: Arc<PauseGate>,
    pub kick: KickRequest,
    pub vcpus: usize,
    /// The effective options, as the config file would hold them.
    pub config: serde_json::Value,
    pub exit_counters: Arc<ExitCounters>,
    /// The virtio-iommu's counters, when there is one.
    pub iommu: Option<IommuCounterSource>,
    /// Every other device's counters, in BDF order.
    pub devices: Vec<CountedDevice>,
    /// Pressed by `PUT /vm/shutdown`.
    pub power_button: PowerButton,
}

/// What a handler asks of the server besides its answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Followup {
    None,
    /// Stop the VM at this instant unless it ends first.
    StopAt(Instant),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownBody {
    deadline_ms: Option<u64>,
}

impl ApiVm {
    fn state(&self) -> &'static str {
        if self.control.is_stopping() {
            "exited"
        } else if self.pause.is_closed() {
            "paused"
        } else {
            "running"
        }
    }

    fn describe(&self) -> serde_json::Value {
        let mut vm = json!({
            "state": self.state(),
            "uptime_ms": self.control.started().elapsed().as_millis() as u64,
            "config": self.config,
        });
        if let Some(reason) = self.control.exit_reason() {
            vm["exit_status"] = json!(reason.exit_status());
        }
        vm
    }

    fn refuse_if_ended(&self) -> Option<Response> {
        self.control
            .is_stopping()
            .then(|| Response::error(409, "the VM has exited"))
    }

    fn pause_vm(&self) -> Response {
        if let Some(refusal) = self.refuse_if_ended() {
            return refusal;
        }
        if !self.pause.close() {
            return Response::error(409, "the VM is already paused");
        }
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        loop {
            self.kick.kick();
            if self.pause.wait_parked(self.vcpus, KICK_INTERVAL) {
                log::info!("VM paused through the API");
                return Response::json(200, &self.describe());
            }
            if self.control.is_stopping() {
                return Response::error(409, "the VM has exited");
            }
            if Instant::now() >= deadline {
                // Left closed: the others stay parked and the late one parks when its
                // device operation ends.
                return Response::error(
                    503,
                    format!(
                        "only {} of {} vCPUs stopped within {PAUSE_TIMEOUT:?}; the rest will when they leave their device",
                        self.pause.parked(),
                        self.vcpus
                    ),
                );
            }
        }
    }

    fn resume_vm(&self) -> Response {
        if let Some(refusal) = self.refuse_if_ended() {
            return refusal;
        }
        if !self.pause.open() {
            return Response::error(409, "the VM is not paused");
        }
        log::info!("VM resumed through the API");
        Response::json(200, &self.describe())
    }

    fn stop_vm(&self) -> Response {
        if let Some(refusal) = self.refuse_if_ended() {
            return refusal;
        }
        log::warn!("stopping the VM: PUT /vm/stop on the API socket");
        self.control.request_exit(VmExitReason::HostStop);
        Response::json(202, &json!({ "state": "stopping" }))
    }

    fn shutdown_vm(&self, body: &[u8]) -> (Response, Followup) {
        if let Some(refusal) = self.refuse_if_ended() {
            return (refusal, Followup::None);
        }
        let deadline_ms = if body.iter().all(u8::is_ascii_whitespace) {
            DEFAULT_SHUTDOWN_DEADLINE_MS
        } else {
            match serde_json::from_slice::<ShutdownBody>(body) {
                Ok(body) => body.deadline_ms.unwrap_or(DEFAULT_SHUTDOWN_DEADLINE_MS),
                Err(e) => {
                    return (
                        Response::error(400, format!("bad JSON body: {e}")),
                        Followup::None,
                    )
                }
            }
        };
        if deadline_ms > MAX_SHUTDOWN_DEADLINE_MS {
            return (
                Response::error(
                    400,
                    format!("deadline_ms is at most {MAX_SHUTDOWN_DEADLINE_MS}"),
                ),
                Followup::None,
            );
        }
        // The guest learns of it as an ACPI power-button press; one that ignores it is
        // stopped at the deadline all the same.
        let guest_notified = match self.power_button.press() {
            Ok(()) => true,
            Err(e) => {
                log::warn!("could not interrupt the guest for the power button: {e}");
                false
            }
        };
        log::warn!("shutdown asked on the API socket: power button pressed, the VM stops in {deadline_ms} ms unless it ends first");
        let answer = json!({ "deadline_ms": deadline_ms, "guest_notified": guest_notified });
        let at = Instant::now() + Duration::from_millis(deadline_ms);
        (Response::json(202, &answer), Followup::StopAt(at))
    }

    /// Answers `request`.
    pub fn route(&self, request: &Request) -> (Response, Followup) {
        let path = request.path.split('?').next().unwrap_or_default();
        let method = request.method.as_str();
        let not_allowed = |allow| Response {
            allow: Some(allow),
            ..Response::error(405, format!("{method} is not allowed on {path}"))
        };
        let answer = match (path, method) {
            ("/vm", "GET") => Response::json(200, &self.describe()),
            ("/vm", _) => not_allowed("GET"),
            ("/vm/pause", "PUT") => self.pause_vm(),
            ("/vm/resume", "PUT") => self.resume_vm(),
            ("/vm/stop", "PUT") => self.stop_vm(),
            ("/vm/shutdown", "PUT") => return self.shutdown_vm(&request.body),
            ("/vm/pause" | "/vm/resume" | "/vm/stop" | "/vm/shutdown", _) => not_allowed("PUT"),
            ("/metrics", "GET") => {
                let snapshot = metrics::Snapshot::take(self);
                let wants_text = request
                    .accept
                    .as_deref()
                    .is_some_and(|a| a.contains("text/plain"));
                if wants_text {
                    Response::text(snapshot.prometheus())
                } else {
                    Response::json(200, &snapshot.json())
                }
            }
            ("/metrics", _) => not_allowed("GET"),
            _ => Response::error(404, format!("no such path: {path}")),
        };
        (answer, Followup::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use devices::bus::ConcurrentBusDevice;
    use devices::legacy::ged::GED_POWER_BUTTON;
    use devices::legacy::{generic_event_device, GenericEventDevice};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    fn vm() -> ApiVm {
        vm_with_event_device().0
    }

    /// A VM and its event device, whose register the guest would read.
    fn vm_with_event_device() -> (ApiVm, GenericEventDevice) {
        let (ged, power_button) = generic_event_device(EventFd::new(EFD_NONBLOCK).unwrap());
        let vm = ApiVm {
            control: VmControl::new(Instant::now()).unwrap(),
            pause: Arc::default(),
            kick: KickRequest::new().unwrap(),
            vcpus: 0,
            config: json!({ "cpus": 1 }),
            exit_counters: Arc::new(ExitCounters::new(0)),
            iommu: None,
            devices: Vec::new(),
            power_button,
        };
        (vm, ged)
    }

    fn ask(vm: &ApiVm, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let request = Request {
            method: method.into(),
            path: path.into(),
            accept: None,
            body: body.as_bytes().to_vec(),
            close: false,
        };
        let (response, _) = vm.route(&request);
        (
            response.status,
            serde_json::from_str(&response.body).unwrap(),
        )
    }

    #[test]
    fn an_exited_vm_reports_its_status_and_refuses_changes() {
        let vm = vm();
        vm.control.request_exit(VmExitReason::ExitPort(3));
        let (status, state) = ask(&vm, "GET", "/vm", "");
        assert_eq!(status, 200);
        assert_eq!(state["state"], "exited");
        assert_eq!(state["exit_status"], 3);
        assert_eq!(state["config"]["cpus"], 1);
        for path in ["/vm/pause", "/vm/resume", "/vm/stop", "/vm/shutdown"] {
            assert_eq!(ask(&vm, "PUT", path, "").0, 409, "{path}");
        }
    }

    #[test]
    fn pause_and_resume_each_change_the_state_once() {
        let vm = vm();
        assert_eq!(ask(&vm, "PUT", "/vm/resume", "").0, 409);
        assert_eq!(ask(&vm, "PUT", "/vm/pause", "").1["state"], "paused");
        assert_eq!(ask(&vm, "PUT", "/vm/pause", "").0, 409);
        assert_eq!(ask(&vm, "PUT", "/vm/resume", "").1["state"], "running");
        assert_eq!(ask(&vm, "GET", "/vm", "").1["state"], "running");
    }

    #[test]
    fn shutdown_takes_a_deadline_within_bounds_and_presses_the_power_button() {
        let (vm, ged) = vm_with_event_device();
        let request = |body: &str| Request {
            method: "PUT".into(),
            path: "/vm/shutdown".into(),
            accept: None,
            body: body.as_bytes().to_vec(),
            close: false,
        };
        let asked = Instant::now();
        let (response, followup) = vm.route(&request(""));
        assert_eq!(response.status, 202);
        assert!(
            response.body.contains("\"guest_notified\":true"),
            "{}",
            response.body
        );
        let mut register = [0u8; 4];
        ged.read(0, &mut register);
        assert_eq!(u32::from_le_bytes(register), GED_POWER_BUTTON);
        let Followup::StopAt(at) = followup else {
            panic!("no deadline: {followup:?}");
        };
        let default = Duration::from_millis(DEFAULT_SHUTDOWN_DEADLINE_MS);
        assert!(at >= asked + default && at <= Instant::now() + default);
        let (too_long, none) = vm.route(&request("{\"deadline_ms\": 3600001}"));
        assert_eq!((too_long.status, none), (400, Followup::None));
        ged.read(0, &mut register);
        assert_eq!(register, [0; 4], "a refused shutdown presses nothing");
        assert!(!vm.control.is_stopping());
    }

    #[test]
    fn unknown_paths_and_wrong_methods() {
        let vm = vm();
        assert_eq!(ask(&vm, "GET", "/vms", "").0, 404);
        assert_eq!(ask(&vm, "GET", "/", "").0, 404);
        let request = Request {
            method: "POST".into(),
            path: "/vm/pause".into(),
            accept: None,
            body: Vec::new(),
            close: false,
        };
        let (response, _) = vm.route(&request);
        assert_eq!((response.status, response.allow), (405, Some("PUT")));
        assert_eq!(ask(&vm, "GET", "/metrics?x=1", "").0, 200);
    }
}
