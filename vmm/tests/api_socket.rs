//! `--api-socket`: every route against a running guest, pause and resume of a guest that
//! holds, stop, shutdown through the guest's power button and at its deadline, metrics that move, the requests the API must refuse, the
//! socket file's life, and curl as a user would drive it.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A nestor with an API socket, killed if the test fails first.
struct ApiVm {
    child: Option<Child>,
    socket: PathBuf,
    _dir: TempDir,
}

impl ApiVm {
    fn start(name: &str, args: &[&str]) -> Self {
        let dir = TempDir::new(&format!("api-{name}"));
        let socket = dir.path().join("api.sock");
        let mut command = nestor();
        command
            .arg("run")
            .arg("--api-socket")
            .arg(&socket)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !args.contains(&"--timeout") {
            command.args(["--timeout", "120"]);
        }
        let child = command.spawn().expect("cannot start nestor");
        let vm = Self {
            child: Some(child),
            socket,
            _dir: dir,
        };
        vm.wait_for_socket();
        vm
    }

    fn wait_for_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "no API socket appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn request(&self, raw: &str) -> (u16, String) {
        request(&self.socket, raw.as_bytes())
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: nestor\r\nConnection: close\r\n\r\n"
        ));
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn put(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, body) = self.request(&format!(
            "PUT {path} HTTP/1.1\r\nHost: nestor\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    fn finish(mut self) -> Output {
        self.child.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for ApiVm {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `raw`, reads until the server closes, and splits status and body.
fn request(socket: &Path, raw: &[u8]) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).expect("cannot connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    split_response(&String::from_utf8_lossy(&response))
}

fn split_response(response: &str) -> (u16, String) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn get_vm_reports_the_state_the_uptime_and_the_effective_config() {
    if !kvm_available("get_vm_reports_the_state_the_uptime_and_the_effective_config") {
        return;
    }
    let vm = ApiVm::start("get", &["--cpus", "2", "--cmdline", "probe=hold:60000"]);
    let (status, first) = vm.get("/vm");
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["state"], "running");
    assert!(first.get("exit_status").is_none(), "{first}");
    assert_eq!(first["config"]["cpus"], 2);
    assert_eq!(first["config"]["cmdline"], "probe=hold:60000");
    assert_eq!(first["config"]["api-socket"], vm.socket.to_str().unwrap());
    std::thread::sleep(Duration::from_millis(50));
    let (_, second) = vm.get("/vm");
    assert!(second["uptime_ms"].as_u64().unwrap() > first["uptime_ms"].as_u64().unwrap());

    let mode = std::fs::metadata(&vm.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    assert_eq!(vm.put("/vm/stop", "").0, 202);
}

#[test]
fn pause_holds_the_guest_and_resume_lets_it_finish() {
    if !kvm_available("pause_holds_the_guest_and_resume_lets_it_finish") {
        return;
    }
    let mut vm = ApiVm::start("pause", &["--cmdline", "probe=hold:1500"]);
    let (status, paused) = vm.put("/vm/pause", "");
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["state"], "paused");
    // Idempotent: the second asks for nothing new and says so.
    let (again, body) = vm.put("/vm/pause", "");
    assert_eq!(again, 409, "{body}");
    assert_eq!(vm.get("/vm").1["state"], "paused");

    let exits = |vm: &ApiVm| -> u64 {
        let metrics = vm.get("/metrics").1;
        metrics["vcpus"][0]["exits"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    let before = exits(&vm);
    // Three times what the guest would need to finish.
    std::thread::sleep(Duration::from_millis(4500));
    assert!(vm.is_running(), "the guest finished while paused");
    assert_eq!(exits(&vm), before, "a paused vCPU entered the guest");

    let (status, resumed) = vm.put("/vm/resume", "");
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "running");
    let (again, body) = vm.put("/vm/resume", "");
    assert_eq!(again, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not paused"),
        "{body}"
    );

    let output = vm.finish();
    assert_status(&output, 0);
    assert!(
        stdout(&output).contains("PROBE done passed=1 failed=0"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn stop_ends_the_vm_cleanly_and_removes_the_socket() {
    if !kvm_available("stop_ends_the_vm_cleanly_and_removes_the_socket") {
        return;
    }
    let vm = ApiVm::start("stop", &["--cpus", "2", "--cmdline", "probe=hold:60000"]);
    // A paused VM stops too.
    assert_eq!(vm.put("/vm/pause", "").0, 200);
    let asked = Instant::now();
    let (status, body) = vm.put("/vm/stop", "");
    assert_eq!(status, 202, "{body}");
    let socket = vm.socket.clone();
    let output = vm.finish();
    assert_status(&output, 0);
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert!(
        stderr(&output).contains("PUT /vm/stop"),
        "{}",
        stderr(&output)
    );
    assert!(!socket.exists(), "the socket file outlived nestor");
}

/// Waits until the text file at `path` contains `text`, and returns it.
fn wait_for_text(path: &Path, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let contents = std::fs::read_to_string(path).unwrap_or_default();
        if contents.contains(text) {
            return contents;
        }
        assert!(Instant::now() < deadline, "no {text:?} in {contents:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_presses_the_power_button_and_the_guest_powers_off() {
    if !kvm_available("shutdown_presses_the_power_button_and_the_guest_powers_off") {
        return;
    }
    let dir = TempDir::new("api-power-button-serial");
    let serial = dir.path().join("serial.txt");
    let serial_arg = format!("file={}", serial.display());
    let vm = ApiVm::start(
        "power-button",
        &[
            "-v",
            "--serial",
            &serial_arg,
            "--cmdline",
            "probe=power-button",
        ],
    );
    // Pressed only once the guest polls, so what powers it off is the press.
    wait_for_text(&serial, "power-button: waiting", Duration::from_secs(60));
    let asked = Instant::now();
    let (status, body) = vm.put("/vm/shutdown", "{\"deadline_ms\": 60000}");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["guest_notified"], true, "{body}");
    let output = vm.finish();
    let took = asked.elapsed();
    assert_status(&output, 0);
    let guest = std::fs::read_to_string(&serial).unwrap();
    assert!(
        guest.contains("power-button: pressed after") && guest.contains("through S5"),
        "{guest}"
    );
    assert!(
        !guest.contains("PROBE"),
        "the probe did not power off: {guest}"
    );
    let log = stderr(&output);
    assert!(log.contains("VM ended: PowerOff"), "{log}");
    assert!(!log.contains("deadline passed"), "{log}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn shutdown_stops_a_guest_that_ignores_the_button_at_its_deadline() {
    if !kvm_available("shutdown_stops_a_guest_that_ignores_the_button_at_its_deadline") {
        return;
    }
    let mut vm = ApiVm::start("shutdown", &["--cmdline", "probe=hold:60000"]);
    let (bad, body) = vm.put("/vm/shutdown", "{\"deadline_ms\": \"soon\"}");
    assert_eq!(bad, 400, "{body}");
    let (unknown, body) = vm.put("/vm/shutdown", "{\"deadline\": 5}");
    assert_eq!(unknown, 400, "{body}");
    assert!(vm.is_running());

    let asked = Instant::now();
    let (status, body) = vm.put("/vm/shutdown", "{\"deadline_ms\": 1500}");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["deadline_ms"], 1500);
    // Told, but a holding guest never reads the event register.
    assert_eq!(body["guest_notified"], true);
    std::thread::sleep(Duration::from_millis(500));
    assert!(vm.is_running(), "stopped before the deadline");
    let output = vm.finish();
    let took = asked.elapsed();
    assert_status(&output, 0);
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        stderr(&output).contains("shutdown deadline passed"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn metrics_move_when_the_guest_does_io() {
    if !kvm_available("metrics_move_when_the_guest_does_io") {
        return;
    }
    let dir = TempDir::new("api-metrics-disk");
    let disk = dir.file("disk.img", &[0u8; 64 << 10]);
    let disk_arg = format!("path={}", disk.display());
    // The guest holds first, so the API sees the counters before the disk is touched.
    let vm = ApiVm::start(
        "metrics",
        &[
            "--disk",
            &disk_arg,
            "--viommu",
            "--cmdline",
            "probe=hold:3000,virtio-blk,hold:60000",
        ],
    );
    let mmio = |metrics: &Value| {
        metrics["vcpus"][0]["exits"]["mmio-write"].as_u64().unwrap()
            + metrics["vcpus"][0]["exits"]["mmio-read"].as_u64().unwrap()
    };
    let (status, early) = vm.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        mmio(&early),
        0,
        "the disk was driven before the first hold ended: {early}"
    );
    assert_eq!(early["iommu"]["faults"]["reported"], 0, "{early}");
    assert_eq!(early["devices"][0]["kind"], "virtio-blk", "{early}");
    assert_eq!(early["devices"][0]["requests"], 0, "{early}");
    // The probe writes one sector, reads it back and flushes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = |m: &Value| m["devices"][0]["requests"].as_u64().unwrap() >= 3;
    let late = loop {
        let (_, now) = vm.get("/metrics");
        if done(&now) || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(mmio(&late) > 0, "{early}\n{late}");
    let disk = &late["devices"][0];
    assert!(disk["requests"].as_u64().unwrap() >= 3, "{late}");
    assert!(disk["written_bytes"].as_u64().unwrap() >= 512, "{late}");
    assert!(disk["read_bytes"].as_u64().unwrap() >= 512, "{late}");
    assert_eq!(disk["errors"], 0, "{late}");
    assert!(late["uptime_ms"].as_u64() > early["uptime_ms"].as_u64());

    let (status, text) =
        vm.request("GET /metrics HTTP/1.1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    let line = text
        .lines()
        .find(|l| l.starts_with("nestor_vcpu_exits_total{vcpu=\"0\",kind=\"mmio-write\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count > 0, "{line}");
    assert!(
        text.contains("nestor_iommu_faults_total{outcome=\"reported\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("nestor_device_errors_total{kind=\"virtio-blk\",bdf=\"00:01.0\"} 0"),
        "{text}"
    );
    assert_eq!(vm.put("/vm/stop", "").0, 202);
}

/// Every device's counters and the virtio-iommu's start at zero and move when the guest
/// drives each device: the probes' own traffic, nothing made up.
#[test]
fn metrics_count_every_device_and_the_iommu() {
    if !kvm_available("metrics_count_every_device_and_the_iommu") {
        return;
    }
    let dir = TempDir::new("api-metrics-all-files");
    let disk = dir.file("disk.img", &[0u8; 64 << 10]);
    let disk_arg = format!("path={},iommu=on", disk.display());
    let serial = dir.path().join("serial.txt");
    let serial_arg = format!("file={}", serial.display());
    let vm = ApiVm::start(
        "metrics-all",
        &[
            "--disk",
            &disk_arg,
            "--rng",
            "--console",
            "--dma-engine",
            "iommu=on",
            "--serial",
            &serial_arg,
            "--cmdline",
            "probe=hold:2000,viommu,virtio-rng,virtio-console,dma-engine,hold:60000",
        ],
    );
    let (status, early) = vm.get("/metrics");
    assert_eq!(status, 200);
    let kinds: Vec<_> = early["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["virtio-blk", "virtio-rng", "virtio-console", "dma-engine"],
        "{early}"
    );
    for device in early["devices"].as_array().unwrap() {
        assert_eq!(
            device["requests"], 0,
            "driven before the hold ended: {early}"
        );
    }
    let iommu = &early["iommu"];
    assert!(
        iommu["requests"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == 0),
        "{early}"
    );
    assert_eq!(iommu["domains"], serde_json::json!([]), "{early}");

    // Sampled while the probes run: a domain holds mappings only while a probe uses them.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut most_mappings = 0;
    let guest = loop {
        let (_, now) = vm.get("/metrics");
        for domain in now["iommu"]["domains"].as_array().unwrap() {
            most_mappings = most_mappings.max(domain["mappings"].as_u64().unwrap());
        }
        let guest = std::fs::read_to_string(&serial).unwrap_or_default();
        if guest.contains("PROBE dma-engine") {
            break guest;
        }
        assert!(
            Instant::now() < deadline,
            "the probes did not finish: {guest}"
        );
    };
    assert!(!guest.contains("FAIL"), "{guest}");
    assert!(most_mappings > 0, "no domain was seen with a mapping");
    let (_, late) = vm.get("/metrics");
    let device = |kind: &str| {
        late["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {late}"))
            .clone()
    };
    let count = |value: &Value| value.as_u64().unwrap();
    let blk = device("virtio-blk");
    // The viommu probe's read and write through its mapping, then the one that faults.
    assert!(count(&blk["requests"]) >= 3, "{late}");
    assert!(count(&blk["errors"]) >= 1, "{late}");
    let rng = device("virtio-rng");
    assert!(
        count(&rng["requests"]) >= 1 && count(&rng["read_bytes"]) > 0,
        "{late}"
    );
    let console = device("virtio-console");
    let line = "virtio-console: hello from hvc0\n".len() as u64;
    assert!(count(&console["written_bytes"]) >= line, "{late}");
    let engine = device("dma-engine");
    // A copy and a fill that pass, a PASID job refused, a job to a stale IOVA.
    assert!(count(&engine["requests"]) >= 4, "{late}");
    assert!(count(&engine["errors"]) >= 2, "{late}");
    assert!(count(&engine["written_bytes"]) > 0, "{late}");

    let iommu = &late["iommu"];
    for kind in ["attach", "map", "unmap", "probe"] {
        assert!(count(&iommu["requests"][kind]) >= 1, "{kind}: {late}");
    }
    let requests: u64 = iommu["requests"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    let statuses: u64 = iommu["statuses"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    assert_eq!(requests, statuses, "{late}");
    assert!(count(&iommu["statuses"]["ok"]) >= 4, "{late}");
    assert!(count(&iommu["faults"]["reported"]) >= 2, "{late}");

    let (status, text) =
        vm.request("GET /metrics HTTP/1.1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    let sample = |prefix: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
    };
    assert_eq!(
        sample("nestor_iommu_requests_total{type=\"map\"}"),
        count(&iommu["requests"]["map"])
    );
    assert!(sample("nestor_device_requests_total{kind=\"dma-engine\"") >= 4);
    assert!(
        text.contains("# TYPE nestor_iommu_domain_mappings gauge"),
        "{text}"
    );
    assert_eq!(vm.put("/vm/stop", "").0, 202);
}

#[test]
fn bad_requests_are_refused_and_the_next_client_is_served() {
    if !kvm_available("bad_requests_are_refused_and_the_next_client_is_served") {
        return;
    }
    let vm = ApiVm::start("bad", &["--cmdline", "probe=hold:60000"]);
    let status = |raw: &[u8]| request(&vm.socket, raw).0;
    assert_eq!(status(b"GARBAGE\r\n\r\n"), 400);
    assert_eq!(status(b"GET /vm HTTP/1.1 extra\r\n\r\n"), 400);
    assert_eq!(status(b"GET /nowhere HTTP/1.1\r\n\r\n"), 404);
    assert_eq!(status(b"DELETE /vm HTTP/1.1\r\n\r\n"), 405);
    assert_eq!(status(b"GET /vm/pause HTTP/1.1\r\n\r\n"), 405);
    assert_eq!(
        status(b"PUT /vm/shutdown HTTP/1.1\r\nContent-Length: 5\r\n\r\n{{{{{"),
        400
    );
    let long_header = format!("GET /vm HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(long_header.as_bytes()), 413);
    let big_body = format!(
        "PUT /vm/shutdown HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{}",
        "a".repeat(5000)
    );
    assert_eq!(status(big_body.as_bytes()), 413);

    // A client that says nothing is dropped after the read timeout; meanwhile the next one
    // waits, and is then served.
    let mut silent = UnixStream::connect(&vm.socket).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    let (served, body) = vm.get("/vm");
    assert_eq!(served, 200, "{body}");
    assert!(asked.elapsed() < Duration::from_secs(10));
    let mut rest = Vec::new();
    assert_eq!(
        silent.read_to_end(&mut rest).unwrap(),
        0,
        "the silent client got data"
    );

    // A request cut short gets 408 when its time is up.
    let (late, _) = request(&vm.socket, b"GET /vm HTTP/1.1\r\nHost:");
    assert_eq!(late, 408);
    // Keep-alive: two requests on one connection, both answered.
    let mut stream = UnixStream::connect(&vm.socket).unwrap();
    stream
        .write_all(b"GET /vm HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut both = String::new();
    stream.read_to_string(&mut both).unwrap();
    assert_eq!(both.matches("HTTP/1.1 200 OK").count(), 2, "{both}");

    assert_eq!(vm.get("/vm").1["state"], "running");
    assert_eq!(vm.put("/vm/stop", "").0, 202);
}

#[test]
fn an_existing_path_is_refused_unless_it_is_a_stale_socket() {
    let dir = TempDir::new("api-path");
    let file = dir.file("taken", b"keep me");
    let output = run(&["--api-socket", file.to_str().unwrap()]);
    assert_usage_error(&output, "not a socket");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    let live = dir.path().join("live.sock");
    let _listener = UnixListener::bind(&live).unwrap();
    let output = run(&["--api-socket", live.to_str().unwrap()]);
    assert_usage_error(&output, "listening");

    if !kvm_available("an_existing_path_is_refused_unless_it_is_a_stale_socket") {
        return;
    }
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let output = run(&[
        "--api-socket",
        stale.to_str().unwrap(),
        "--cmdline",
        "probe=boot",
    ]);
    assert_status(&output, 0);
    assert!(!stale.exists(), "the socket file outlived nestor");
}

#[test]
fn curl_drives_the_api_as_a_user_would() {
    if !kvm_available("curl_drives_the_api_as_a_user_would") {
        return;
    }
    let curl_ok = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !curl_ok {
        if std::env::var_os("NESTOR_REQUIRE_KVM").is_some_and(|v| v == "1") {
            panic!("curl is required here (tests/run-all.sh installs it)");
        }
        eprintln!("SKIP curl_drives_the_api_as_a_user_would: no curl");
        return;
    }
    let vm = ApiVm::start("curl", &["--cmdline", "probe=hold:60000"]);
    let curl = |args: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--unix-socket"])
            .arg(&vm.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "curl {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let state: Value = serde_json::from_str(&curl(&["http://localhost/vm"])).unwrap();
    assert_eq!(state["state"], "running");
    let paused: Value =
        serde_json::from_str(&curl(&["-X", "PUT", "http://localhost/vm/pause"])).unwrap();
    assert_eq!(paused["state"], "paused");
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "http://localhost/vm/pause",
    ]);
    assert_eq!(code, "409");
    curl(&["-X", "PUT", "http://localhost/vm/resume"]);
    let text = curl(&["-H", "Accept: text/plain", "http://localhost/metrics"]);
    assert!(
        text.contains("# TYPE nestor_vcpu_exits_total counter"),
        "{text}"
    );
    let answer: Value = serde_json::from_str(&curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"deadline_ms\": 100}",
        "http://localhost/vm/shutdown",
    ]))
    .unwrap();
    assert_eq!(answer["deadline_ms"], 100);
    assert_status(&vm.finish(), 0);
}

/// The latency of `GET /vm` on a running VM, over one kept-alive connection: printed for
/// the record, and bounded loosely so a regression to a blocking server shows.
#[test]
fn get_vm_latency() {
    if !kvm_available("get_vm_latency") {
        return;
    }
    let vm = ApiVm::start("latency", &["--cmdline", "probe=hold:60000"]);
    let mut stream = UnixStream::connect(&vm.socket).unwrap();
    let mut times = Vec::with_capacity(1000);
    let mut buffer = vec![0u8; 4096];
    for _ in 0..1000 {
        let started = Instant::now();
        stream.write_all(b"GET /vm HTTP/1.1\r\n\r\n").unwrap();
        let mut got = Vec::new();
        // Head, then as many body bytes as Content-Length says.
        loop {
            let n = stream.read(&mut buffer).unwrap();
            assert!(n > 0, "the API closed the connection");
            got.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    break;
                }
            }
        }
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "GET /vm latency over {} requests: median {:?}, p99 {:?}",
        times.len(),
        median,
        times[times.len() * 99 / 100]
    );
    assert!(median < Duration::from_millis(50), "median {median:?}");
    drop(stream);
    assert_eq!(vm.put("/vm/stop", "").0, 202);
}

/// A client that keeps its connection busy is let go after a while, so the next one gets in.
#[test]
fn a_busy_connection_is_retired_and_the_next_client_served() {
    if !kvm_available("a_busy_connection_is_retired_and_the_next_client_served") {
        return;
    }
    let vm = ApiVm::start("retire", &["--cmdline", "probe=hold:60000"]);
    let mut busy = UnixStream::connect(&vm.socket).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let socket = vm.socket.clone();
    let waiting = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let asked = Instant::now();
        let answer = request(&socket, b"GET /vm HTTP/1.1\r\nConnection: close\r\n\r\n");
        (answer.0, asked.elapsed())
    });
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(30) {
        if busy.write_all(b"GET /vm HTTP/1.1\r\n\r\n").is_err() {
            break;
        }
        let mut response = vec![0u8; 8192];
        let n = busy.read(&mut response).unwrap_or(0);
        let text = String::from_utf8_lossy(&response[..n]);
        if n == 0 || text.contains("Connection: close") {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(closed, "the busy connection was never closed");
    let (status, waited) = waiting.join().unwrap();
    assert_eq!(status, 200);
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    assert_eq!(vm.put("/vm/stop", "").0, 202);
}
