//! Request ids: kept from the client's `X-Request-Id` (when it is short
//! visible ASCII), or 128 random bits as 32 hex digits. Held inline, so an
//! id costs no allocation.

/// Longest client-sent id that is kept; a longer one is replaced, so a
/// client cannot make every log line and error body carry kilobytes.
pub const MAX_CLIENT_ID: usize = 128;

#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; MAX_CLIENT_ID],
    len: u8,
}

impl RequestId {
    /// A new random id.
    pub fn fresh() -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut v = fastrand::u128(..);
        let mut id = RequestId {
            bytes: [0; MAX_CLIENT_ID],
            len: 32,
        };
        for b in id.bytes[..32].iter_mut().rev() {
            *b = HEX[(v & 0xf) as usize];
            v >>= 4;
        }
        id
    }

    /// The client's id if it is usable, else a new one.
    pub fn from_client(sent: Option<&[u8]>) -> RequestId {
        match sent {
            Some(v)
                if !v.is_empty()
                    && v.len() <= MAX_CLIENT_ID
                    && v.iter().all(|&b| (0x20..=0x7e).contains(&b)) =>
            {
                let mut id = RequestId {
                    bytes: [0; MAX_CLIENT_ID],
                    len: v.len() as u8,
                };
                id.bytes[..v.len()].copy_from_slice(v);
                id
            }
            _ => RequestId::fresh(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Visible ASCII by construction.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_distinct() {
        let a = RequestId::fresh();
        assert_eq!(a.as_bytes().len(), 32);
        assert!(a.as_bytes().iter().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a.as_bytes(), RequestId::fresh().as_bytes());
    }

    #[test]
    fn client_ids_are_kept_unless_unusable() {
        assert_eq!(RequestId::from_client(Some(b"abc-123")).as_str(), "abc-123");
        assert_eq!(
            RequestId::from_client(Some(&[b'x'; 200])).as_bytes().len(),
            32
        );
        assert_eq!(RequestId::from_client(Some(b"a\x01")).as_bytes().len(), 32);
        assert_eq!(RequestId::from_client(None).as_bytes().len(), 32);
    }
}
