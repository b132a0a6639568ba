//! Request ids: kept from the client's `X-Request-Id`, or generated here.

use http::{HeaderMap, HeaderValue};

/// Longest client-sent id that is kept; a longer one is replaced, so a
/// client cannot make every log line and error body carry kilobytes.
const MAX_CLIENT_ID: usize = 128;

/// 128 random bits as 32 lower-case hex digits.
fn hex_id() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut v = fastrand::u128(..);
    let mut out = [0u8; 32];
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
    out
}

/// The request's id: the client's if it sent a usable one, else a new one.
pub fn from_headers(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&super::headers::X_REQUEST_ID) {
        if !v.is_empty() && v.len() <= MAX_CLIENT_ID && v.to_str().is_ok() {
            return v.clone();
        }
    }
    fresh()
}

pub fn fresh() -> HeaderValue {
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&hex_id()).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_distinct() {
        let a = fresh();
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, fresh());
    }

    #[test]
    fn client_ids_are_kept_unless_unusable() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(from_headers(&h), "abc-123");
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"x".repeat(200)).unwrap(),
        );
        assert_eq!(from_headers(&h).len(), 32);
    }
}
