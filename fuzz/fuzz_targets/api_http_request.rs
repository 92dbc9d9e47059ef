//! Requests a client sends to the API socket, through the real request parser, raw or built
//! from near-valid parts, checked against a model of what the parser must say:
//! - nothing panics, and a refusal is 400, 413 or 501 with a JSON error body;
//! - a request built from known parts is parsed to exactly those parts (method, path, body,
//!   whether the connection closes) or refused with the status its first fault calls for
//!   (a malformed line 400, too many or too long headers 413, chunked 501, a bad or
//!   conflicting Content-Length 400, a body over the limit 413);
//! - a parsed request took no more bytes than it had, its body is the bytes after its head
//!   and within the limits, bytes after it change nothing, and every shorter prefix of it
//!   reads as "not yet";
//! - pipelined requests parse one after another, each taking bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestor_fuzz::input::Input;
use vmm::api_http::{parse_request, Request, MAX_BODY, MAX_HEAD};

/// httparse's header array in the parser.
const MAX_HEADERS: usize = 32;

/// What the parser must say about a built request.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Parsed {
        method: String,
        path: String,
        body: Vec<u8>,
        close: bool,
    },
    Refused(u16),
    /// The head is whole and sound, but not all of the declared body came.
    Incomplete,
}

/// A request built from parts the model knows, and the model's verdict.
fn built(input: &mut Input) -> (Vec<u8>, Expected) {
    let (method, method_ok) = input.pick(&[
        ("GET", true),
        ("PUT", true),
        ("DELETE", true),
        ("G\x01T", false),
        ("", false),
    ]);
    let (path, path_ok) = input.pick(&[
        ("/vm", true),
        ("/vm/shutdown", true),
        ("/metrics?x=1", true),
        ("/a b", false),
        ("/\x7f", false),
    ]);
    let (version, minor) = input.pick(&[
        ("HTTP/1.1", Some(1)),
        ("HTTP/1.0", Some(0)),
        ("HTTP/2.0", None),
    ]);
    let mut head = format!("{method} {path} {version}\r\n").into_bytes();
    let mut refusal = (!method_ok || !path_ok || minor.is_none()).then_some(400);

    let body = input.bytes(64);
    let headers = input.below(40);
    let mut length: Option<usize> = None;
    // The parser reads the first Connection header.
    let mut connection: Option<&str> = None;
    let mut header_refusal = None;
    for _ in 0..headers {
        let (name, value) = match input.below(7) {
            0 => {
                let value = match input.below(5) {
                    0 => body.len().to_string(),
                    1 => format!(" {} ", body.len()),
                    2 => "x".into(),
                    3 => (MAX_BODY + 1 + input.below(100)).to_string(),
                    _ => input.below(80).to_string(),
                };
                ("Content-Length", value)
            }
            1 => ("transfer-encoding", "chunked".to_string()),
            2 => {
                let value = input.pick(&["close", "CLOSE", "keep-alive"]);
                connection = connection.or(Some(value));
                ("Connection", value.to_string())
            }
            3 => ("Accept", "text/plain".to_string()),
            4 => ("X-Pad", "p".repeat(input.below(3000))),
            _ => ("Host", "nestor".to_string()),
        };
        head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        // The parser's rules, in header order: the first fault decides.
        if header_refusal.is_none() {
            if name.eq_ignore_ascii_case("transfer-encoding") {
                header_refusal = Some(501);
            } else if name == "Content-Length" {
                match value.trim().parse::<usize>() {
                    Err(_) => header_refusal = Some(400),
                    Ok(v) if length.is_some_and(|l| l != v) => header_refusal = Some(400),
                    Ok(v) => length = Some(v),
                }
            }
        }
    }
    head.extend_from_slice(b"\r\n");
    let length = length.unwrap_or(0);
    let mut bytes = head.clone();
    bytes.extend_from_slice(&body[..length.min(body.len())]);

    refusal = refusal
        .or((headers > MAX_HEADERS).then_some(413))
        .or((head.len() > MAX_HEAD).then_some(413))
        .or(header_refusal)
        .or((length > MAX_BODY).then_some(413));
    let close = minor == Some(0) || connection.is_some_and(|c| c.eq_ignore_ascii_case("close"));
    let expected = match refusal {
        Some(status) => Expected::Refused(status),
        None if length > body.len() => Expected::Incomplete,
        None => Expected::Parsed {
            method: method.to_string(),
            path: path.to_string(),
            body: body[..length].to_vec(),
            close,
        },
    };
    (bytes, expected)
}

/// The invariants every parse must keep; returns the bytes a parsed request took.
fn check_generic(bytes: &[u8]) -> Option<usize> {
    match parse_request(bytes) {
        Err(response) => {
            assert!(
                matches!(response.status, 400 | 413 | 501),
                "refused with {}",
                response.status
            );
            let body: serde_json::Value =
                serde_json::from_str(&response.body).expect("the refusal is not JSON");
            assert!(body["error"].is_string(), "{body}");
            None
        }
        Ok(None) => None,
        Ok(Some((request, used))) => {
            check_parsed(bytes, &request, used);
            Some(used)
        }
    }
}

fn check_parsed(bytes: &[u8], request: &Request, used: usize) {
    assert!(
        used > 0 && used <= bytes.len(),
        "took {used} of {}",
        bytes.len()
    );
    assert!(request.body.len() <= MAX_BODY);
    let head = used - request.body.len();
    assert!(head <= MAX_HEAD, "a head of {head} bytes");
    assert_eq!(
        &bytes[head..used],
        &request.body[..],
        "the body is not what followed the head"
    );
    // The empty line may end in CRLF or a bare LF, as may the line before it.
    let head_bytes = &bytes[..head];
    assert!(
        head_bytes.ends_with(b"\n\n") || head_bytes.ends_with(b"\n\r\n"),
        "the head does not end with an empty line"
    );
    // Bytes after the request change nothing.
    match parse_request(&bytes[..used]) {
        Ok(Some((alone, alone_used))) => {
            assert_eq!(&alone, request);
            assert_eq!(alone_used, used);
        }
        other => panic!("the request alone parses as {other:?}"),
    }
    // Shorter prefixes are incomplete: at the head's end, the last byte, and a sample.
    let step = (used / 16).max(1);
    let mut cuts: Vec<usize> = (0..used).step_by(step).collect();
    cuts.extend([head.saturating_sub(1), head, used - 1]);
    for cut in cuts.into_iter().filter(|&c| c < used) {
        assert!(
            matches!(parse_request(&bytes[..cut]), Ok(None)),
            "the prefix of {cut} bytes of a {used}-byte request is not incomplete"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    if input.bool() {
        let (bytes, expected) = built(&mut input);
        let got = parse_request(&bytes);
        match (&got, &expected) {
            (Ok(None), Expected::Incomplete) => {}
            (
                Ok(Some((request, used))),
                Expected::Parsed {
                    method,
                    path,
                    body,
                    close,
                },
            ) => {
                assert_eq!(*used, bytes.len());
                assert_eq!((&request.method, &request.path), (method, path));
                assert_eq!(&request.body, body);
                assert_eq!(request.close, *close, "close");
                check_parsed(&bytes, request, *used);
            }
            (Err(response), Expected::Refused(status)) if response.status == *status => {}
            _ => panic!("parsed {got:?}, the model says {expected:?}"),
        }
        return;
    }
    // Raw bytes, as a client may pipeline them.
    let mut rest = &data[1.min(data.len())..];
    for _ in 0..8 {
        match check_generic(rest) {
            Some(used) => rest = &rest[used..],
            None => break,
        }
    }
});
