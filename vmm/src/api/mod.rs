//! `--api-socket`: HTTP/1.1 with JSON bodies on a Unix socket, served by the `api` thread
//! under its own seccomp filter, one client at a time.
//!
//! Nothing a client does reaches the vCPUs or the VMM thread except through the handlers'
//! bounded calls (see `routes`): a slow or silent client costs only the API itself a few
//! seconds, after which its connection is closed and the next client served.

pub(crate) mod http;
mod metrics;
mod routes;
mod socket_file;

use std::os::fd::AsRawFd;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use devices::VmExitReason;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use metrics::CountedDevice;
pub use routes::ApiVm;
pub use socket_file::ApiListener;

use crate::seccomp::{self, SeccompMode, ThreadKind};
use http::{Connection, ReadError, Response};
use routes::Followup;

/// How long a connection may sit without sending a whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// A kept-alive connection is closed after the response that ends this: one client at a
/// time must not mean one client for ever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);
/// How long the API waits for a client when nothing else is due.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// The running API thread.
pub struct ApiThread {
    stop: EventFd,
    done: Receiver<()>,
}

impl ApiThread {
    /// Starts the `api` thread; it installs its filter before it takes a client.
    pub fn start(listener: ApiListener, vm: ApiVm, mode: SeccompMode) -> std::io::Result<Self> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let stop_fd = stop.try_clone()?;
        let (finished, done) = channel();
        std::thread::Builder::new()
            .name("api".into())
            .spawn(move || {
                if let Err(e) = seccomp::install(ThreadKind::Api, mode) {
                    vm.control
                        .request_exit(VmExitReason::VmmFailure(format!("api: {e}")));
                    return;
                }
                Server {
                    listener,
                    vm,
                    stop: stop_fd,
                    stop_at: None,
                    stopping: false,
                }
                .run();
                // The listener, dropped above, has removed the socket file.
                let _ = finished.send(());
            })?;
        Ok(Self { stop, done })
    }

    /// Tells the thread to close the socket and waits for it, at most `timeout`.
    pub fn finish(self, timeout: Duration) {
        let _ = self.stop.write(1);
        let _ = self.done.recv_timeout(timeout);
    }
}

struct Server {
    listener: ApiListener,
    vm: ApiVm,
    stop: EventFd,
    /// When a shutdown's deadline stops the VM.
    stop_at: Option<Instant>,
    /// nestor is exiting: close the socket.
    stopping: bool,
}

impl Server {
    fn stop_requested(&self) -> bool {
        self.stop.read().is_ok()
    }

    /// Stops the VM once a pending shutdown's deadline has passed.
    fn check_deadline(&mut self) {
        if self.stop_at.is_some_and(|at| Instant::now() >= at) {
            self.stop_at = None;
            if !self.vm.control.is_stopping() {
                log::warn!("stopping the VM: the shutdown deadline passed");
                self.vm.control.request_exit(VmExitReason::HostStop);
            }
        }
    }

    fn run(mut self) {
        loop {
            let deadline = self.stop_at.unwrap_or_else(|| Instant::now() + IDLE_WAIT);
            let fd = self.listener.listener.as_raw_fd();
            let ready = http::wait_for(fd, libc::POLLIN, self.stop.as_raw_fd(), deadline);
            self.stopping |= self.stop_requested();
            if self.stopping {
                return;
            }
            self.check_deadline();
            if !ready {
                continue;
            }
            match self.listener.listener.accept() {
                Ok((stream, _)) => self.serve(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => log::warn!("API socket: accept failed: {e}"),
            }
        }
    }

    /// Answers one client's requests until it closes, falls silent or errs.
    fn serve(&mut self, stream: std::os::unix::net::UnixStream) {
        let mut connection = match Connection::new(stream, self.stop.as_raw_fd()) {
            Ok(connection) => connection,
            Err(e) => return log::warn!("API socket: {e}"),
        };
        let retire_at = Instant::now() + CONNECTION_LIFETIME;
        while !self.stopping {
            let request = match self.next_request(&mut connection) {
                Ok(request) => request,
                Err(ReadError::Refuse(response)) => {
                    let _ = connection.write_response(&response, true, WRITE_TIMEOUT);
                    return;
                }
                Err(ReadError::TimedOut) if connection.has_partial() => {
                    let late = Response::error(408, "the request did not arrive in time");
                    let _ = connection.write_response(&late, true, WRITE_TIMEOUT);
                    return;
                }
                Err(ReadError::Io(e)) => return log::info!("API client dropped: {e}"),
                Err(ReadError::TimedOut | ReadError::Closed) => return,
            };
            let (response, followup) = self.vm.route(&request);
            if let Followup::StopAt(at) = followup {
                self.stop_at = Some(self.stop_at.map_or(at, |old| old.min(at)));
            }
            let close = request.close || Instant::now() >= retire_at;
            if connection
                .write_response(&response, close, WRITE_TIMEOUT)
                .is_err()
                || close
            {
                return;
            }
        }
    }

    /// Reads a request for at most REQUEST_TIMEOUT, stopping the VM meanwhile if a
    /// shutdown's deadline comes first.
    fn next_request(&mut self, connection: &mut Connection) -> Result<http::Request, ReadError> {
        let patience = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let until = self.stop_at.map_or(patience, |at| at.min(patience));
            let result = connection.read_request(until);
            self.check_deadline();
            self.stopping |= self.stop_requested();
            match result {
                Err(ReadError::TimedOut) if !self.stopping && Instant::now() < patience => {}
                other => return other,
            }
        }
    }
}
