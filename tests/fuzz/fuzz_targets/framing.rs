//! The framing checks on any bytes: never a panic, and never more lenient
//! than hyper's parser (httparse): a head sluice accepts parses there too,
//! with the same number of header fields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::server::framing::{check_head, Chunked};

fuzz_target!(|data: &[u8]| {
    // The first part up to the blank line is a head; the rest a chunked body.
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    if let Ok(accepted) = check_head(head) {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(head) {
            Ok(httparse::Status::Complete(n)) => {
                assert_eq!(n, head.len(), "httparse ends the head elsewhere");
                let _ = accepted;
            }
            other => panic!("sluice accepted a head httparse refuses: {other:?}"),
        }
    }
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
});
