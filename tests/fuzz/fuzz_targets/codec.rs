//! The HTTP/1 codec on any bytes: never a panic, and never more lenient
//! than httparse alone (a head sluice accepts parses there too, ending at
//! the same byte, with the same number of fields); a response head either
//! parses or is refused; the chunked parser agrees with itself whole and
//! byte by byte, and its data steps add up; a head's HTTP/2 translation
//! never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::http1::chunked::{Chunked, Piece};
use sluice::http1::codec::{parse_request, parse_response, RequestHead, ResponseHead};

fuzz_target!(|data: &[u8]| {
    // The first part up to the blank line is a head; the rest a chunked body.
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let mut parsed = RequestHead::new();
    let mut scanned = 0;
    if let Ok(true) = parse_request(head, &mut parsed, &mut scanned, 1 << 16) {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(head) {
            Ok(httparse::Status::Complete(n)) => {
                assert_eq!(n, parsed.len, "httparse ends the head elsewhere");
                assert_eq!(req.headers.len(), parsed.fields.len());
            }
            other => panic!("sluice accepted a head httparse refuses: {other:?}"),
        }
        // Incremental arrival finds the same head.
        let mut again = RequestHead::new();
        let mut scanned = 0;
        let mut found = None;
        for n in 1..=head.len() {
            if let Ok(true) = parse_request(&head[..n], &mut again, &mut scanned, 1 << 16) {
                found = Some(again.len);
                break;
            }
        }
        assert_eq!(found, Some(parsed.len));
    }
    // Its translation for an HTTP/2 pool, and a trailer section's, are
    // errors or requests, never panics.
    let _ = sluice::http1::h2_heads::request(head, false, "127.0.0.1:1");
    let _ = sluice::http1::h2_heads::trailers(body);
    let mut resp = ResponseHead::new();
    let mut scanned = 0;
    let _ = parse_response(head, &mut resp, &mut scanned, 1 << 16, false);

    // The chunked parser, whole and byte by byte, agrees with itself.
    let mut whole = Chunked::new(4096);
    let all = whole.advance(body);
    let mut bytewise = Chunked::new(4096);
    let mut consumed = 0;
    let mut result = Ok((0, false));
    for b in body {
        match bytewise.advance(std::slice::from_ref(b)) {
            Ok((n, done)) => {
                consumed += n;
                result = Ok((consumed, done));
                if done {
                    break;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    match (all, result) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("whole {a:?} but byte by byte {b:?}"),
    }
    // Steps never stall: each moves on, ends the body or fails.
    let mut stepper = Chunked::new(4096);
    let mut at = 0;
    while at < body.len() {
        match stepper.step(&body[at..]) {
            Ok(s) => {
                assert!(s.len > 0 || s.done || s.piece != Piece::Data);
                at += s.len;
                if s.done || s.len == 0 {
                    break;
                }
            }
            Err(_) => break,
        }
    }
});
