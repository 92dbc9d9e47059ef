//! HTTP/1.1 on one connection: requests parsed with httparse, within small limits and a
//! deadline, so a client can neither make nestor buffer much nor hold the API for long.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Request line and headers together.
pub const MAX_HEAD: usize = 8 * 1024;
pub const MAX_BODY: usize = 4 * 1024;
const MAX_HEADERS: usize = 32;

/// One request, as the routes see it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The Accept header, when there is one.
    pub accept: Option<String>,
    pub body: Vec<u8>,
    /// The client asked to close after this request (or spoke HTTP/1.0).
    pub close: bool,
}

/// An answer: status, content type and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Sent as `Allow` (with 405).
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string(),
            allow: None,
        }
    }

    pub fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.to_string() }))
    }

    pub fn text(body: String) -> Self {
        Self {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body,
            allow: None,
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Why no request came.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection between requests.
    Closed,
    /// The deadline passed, or the VM is ending (`stop` became readable).
    TimedOut,
    /// Answer this, then close.
    Refuse(Response),
    Io(std::io::Error),
}

/// A client connection; bytes past one request are kept for the next.
pub struct Connection {
    stream: UnixStream,
    buffer: Vec<u8>,
    /// Readable when the server must stop waiting for clients.
    stop: RawFd,
}

/// Waits until `fd` has `events` or `stop` is readable, at most until `deadline`.
/// True when `fd` is ready.
pub fn wait_for(fd: RawFd, events: libc::c_short, stop: RawFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [
            libc::pollfd {
                fd,
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of two pollfds for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        if fds[1].revents != 0 {
            return false;
        }
        if fds[0].revents != 0 {
            return true;
        }
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, Response> {
    let mut length = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::error(
                501,
                "chunked bodies are not supported; send Content-Length",
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| Response::error(400, "bad Content-Length"))?;
            if length.is_some_and(|l| l != value) {
                return Err(Response::error(400, "conflicting Content-Length headers"));
            }
            length = Some(value);
        }
    }
    Ok(length.unwrap_or(0))
}

fn header_value(headers: &[httparse::Header<'_>], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
}

/// What the buffer holds: a whole request and the bytes it took, or not yet (`Ok(None)`),
/// or an answer refusing it.
pub fn parse_request(buffer: &[u8]) -> Result<Option<(Request, usize)>, Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buffer) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD => {
            return Err(Response::error(
                413,
                format!("headers over {MAX_HEAD} bytes"),
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Response::error(
                413,
                format!("more than {MAX_HEADERS} headers"),
            ));
        }
        Err(e) => return Err(Response::error(400, format!("malformed request: {e}"))),
    };
    if head > MAX_HEAD {
        return Err(Response::error(
            413,
            format!("headers over {MAX_HEAD} bytes"),
        ));
    }
    let length = content_length(request.headers)?;
    if length > MAX_BODY {
        return Err(Response::error(413, format!("body over {MAX_BODY} bytes")));
    }
    if buffer.len() < head + length {
        return Ok(None);
    }
    let connection = header_value(request.headers, "connection").unwrap_or_default();
    let parsed = Request {
        method: request.method.unwrap_or_default().to_owned(),
        path: request.path.unwrap_or_default().to_owned(),
        accept: header_value(request.headers, "accept"),
        body: buffer[head..head + length].to_vec(),
        close: request.version == Some(0) || connection.eq_ignore_ascii_case("close"),
    };
    Ok(Some((parsed, head + length)))
}

impl Connection {
    pub fn new(stream: UnixStream, stop: RawFd) -> std::io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            buffer: Vec::new(),
            stop,
        })
    }

    /// Part of a request has arrived.
    pub fn has_partial(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// The next request, if one arrives whole before `deadline`.
    pub fn read_request(&mut self, deadline: Instant) -> Result<Request, ReadError> {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some((request, used)) = parse_request(&self.buffer).map_err(ReadError::Refuse)? {
                self.buffer.drain(..used);
                return Ok(request);
            }
            if !wait_for(self.stream.as_raw_fd(), libc::POLLIN, self.stop, deadline) {
                return Err(ReadError::TimedOut);
            }
            // Never more than a full head and body could need.
            let room = (MAX_HEAD + MAX_BODY + 1).saturating_sub(self.buffer.len());
            let want = chunk.len().min(room.max(1));
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) if self.buffer.is_empty() => return Err(ReadError::Closed),
                Ok(0) => {
                    return Err(ReadError::Refuse(Response::error(
                        400,
                        "the connection closed inside a request",
                    )))
                }
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Sends `response` within `timeout`; `close` says the connection ends after it.
    pub fn write_response(
        &mut self,
        response: &Response,
        close: bool,
        timeout: Duration,
    ) -> std::io::Result<()> {
        let mut bytes = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            response.status,
            reason_phrase(response.status),
            response.content_type,
            response.body.len()
        );
        if let Some(allow) = response.allow {
            bytes.push_str(&format!("Allow: {allow}\r\n"));
        }
        if close {
            bytes.push_str("Connection: close\r\n");
        }
        bytes.push_str("\r\n");
        bytes.push_str(&response.body);
        let deadline = Instant::now() + timeout;
        let mut left = bytes.as_bytes();
        while !left.is_empty() {
            match self.stream.write(left) {
                Ok(n) => left = &left[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if !wait_for(self.stream.as_raw_fd(), libc::POLLOUT, self.stop, deadline) {
                        return Err(ErrorKind::TimedOut.into());
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> Request {
        parse_request(bytes).unwrap().unwrap().0
    }

    #[test]
    fn a_request_with_a_body() {
        let raw = b"PUT /vm/shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n{}\r\nGET";
        let (request, used) = parse_request(raw).unwrap().unwrap();
        assert_eq!(used, raw.len() - 3);
        assert_eq!(request.method, "PUT");
        assert_eq!(request.path, "/vm/shutdown");
        assert_eq!(request.body, b"{}\r\n");
        assert!(!request.close);
    }

    #[test]
    fn partial_until_the_body_is_there() {
        assert!(parse_request(b"GET /vm HTTP/1.1\r\n").unwrap().is_none());
        assert!(
            parse_request(b"PUT /vm HTTP/1.1\r\nContent-Length: 3\r\n\r\n{}")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn http_1_0_and_connection_close_close() {
        assert!(parsed(b"GET /vm HTTP/1.0\r\n\r\n").close);
        assert!(parsed(b"GET /vm HTTP/1.1\r\nConnection: close\r\n\r\n").close);
        let accept = parsed(b"GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n").accept;
        assert_eq!(accept.as_deref(), Some("text/plain"));
    }

    /// Mangled requests: every outcome is an answer or a wait for more, never a panic or a
    /// request longer than its input.
    #[test]
    fn mangled_requests_never_panic() {
        let valid = b"PUT /vm/shutdown HTTP/1.1\r\nAccept: text/plain\r\nContent-Length: 18\r\n\r\n{\"deadline_ms\": 5}";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut bytes = valid.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            if let Ok(Some((request, used))) = parse_request(&bytes) {
                assert!(used <= bytes.len());
                assert!(request.body.len() <= MAX_BODY);
            }
        }
    }

    #[test]
    fn refusals() {
        let status = |bytes: &[u8]| parse_request(bytes).err().map(|r| r.status);
        assert_eq!(status(b"GET\x01/vm HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"GET /vm HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"PUT /vm HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"PUT /vm HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"),
            Some(413)
        );
        assert_eq!(
            status(b"PUT /vm HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(501)
        );
        let long = [b"GET /vm HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert_eq!(status(&long), Some(413));
        let many: Vec<u8> = [b"GET /vm HTTP/1.1\r\n".to_vec(), b"A: b\r\n".repeat(40)].concat();
        assert_eq!(status(&many), Some(413));
    }
}
