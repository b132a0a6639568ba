//! The PROXY protocol header reader on any bytes: never a panic; a header
//! found is never longer than the input and parses the same with any bytes
//! after it (so reading exactly its length never takes a request byte);
//! every prefix of a found header is incomplete, never a different answer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::proxy_protocol::{parse, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Header { len, source } = parse(data) {
        assert!(len <= data.len());
        let mut more = data[..len].to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&more), Parsed::Header { len, source });
        for cut in 1..len {
            assert_eq!(parse(&data[..cut]), Parsed::Incomplete, "prefix {cut} of {len}");
        }
    }
});
