//! The PROXY protocol (HAProxy's, v1 text and v2 binary): read on
//! listeners with `proxy_protocol = true` (HAProxy's `accept-proxy`), so
//! the address behind an L4 load balancer is the client everywhere; and
//! written to backends of pools with `send_proxy_protocol` (`send-proxy`,
//! `send-proxy-v2`). Parsing and building are the `ppp` crate's; this module
//! takes exactly the header's bytes off the stream, never a byte more.

use ppp::v2;
use ppp::{HeaderResult, PartialResult};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// What the start of a connection holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes naming `source` (None: a LOCAL or
    /// UNKNOWN header, for the proxy's own checks: the connection's peer
    /// stays the client).
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
    /// A header may follow, but not all of it is here.
    Incomplete,
    /// Not a PROXY header.
    Invalid,
}

/// The v2 signature (12 bytes) and the v1 prefix.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header (the spec's 107 bytes) and the largest v2 header
/// taken (addresses and TLVs; real ones are well under).
const V1_MAX: usize = 107;
const V2_MAX: usize = 16 + 1024;

/// Parses the header at the start of `buf`, if a whole one is there.
pub fn parse(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V2_SIGNATURE.len());
    let v2 = buf[..n] == V2_SIGNATURE[..n];
    let n1 = buf.len().min(V1_PREFIX.len());
    let v1 = buf[..n1] == V1_PREFIX[..n1];
    if !v1 && !v2 {
        return Parsed::Invalid;
    }
    if v2 && buf.len() >= 16 {
        let len = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if len > V2_MAX {
            return Parsed::Invalid;
        }
        if buf.len() < len {
            return Parsed::Incomplete;
        }
    }
    if v1 && !buf.windows(2).any(|w| w == b"\r\n") {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid
        } else {
            Parsed::Incomplete
        };
    }
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Parsed::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(h)) => Parsed::Header {
            len: h.header.len(),
            source: match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(h)) => Parsed::Header {
            len: h.len(),
            source: match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                // LOCAL, or a family without an IP (unix, unspecified).
                _ => None,
            },
        },
        _ => Parsed::Invalid,
    }
}

/// Why a connection was refused.
#[derive(Debug)]
pub enum Refused {
    Invalid,
    TimedOut,
    Io(std::io::Error),
}

/// Takes the PROXY header off the start of `stream` within `timeout` and
/// returns the client it names (None: keep the peer). Usually the whole
/// header is in the first segment and one peek and one read take it; a
/// header split across segments is read to its end in steps (v2: the fixed
/// part, then its length; v1: up to its line end).
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, Refused> {
    let reading = async {
        let mut buf = vec![0u8; V2_MAX];
        // Usually the whole header is in what has arrived.
        let n = stream.peek(&mut buf).await.map_err(Refused::Io)?;
        match parse(&buf[..n]) {
            Parsed::Header { len, source } => {
                stream
                    .read_exact(&mut buf[..len])
                    .await
                    .map_err(Refused::Io)?;
                return Ok(source);
            }
            Parsed::Incomplete if n > 0 => {}
            _ => return Err(Refused::Invalid),
        }
        // Split across segments: read only what belongs to the header, a
        // step at a time (v1 a byte, v2 its fixed part then its payload).
        let v1 = buf[0] == b'P';
        let mut have = 0;
        loop {
            let want = if v1 {
                have + 1
            } else if have < 16 {
                16
            } else {
                16 + u16::from_be_bytes([buf[14], buf[15]]) as usize
            };
            if want > buf.len() {
                return Err(Refused::Invalid);
            }
            stream
                .read_exact(&mut buf[have..want])
                .await
                .map_err(Refused::Io)?;
            have = want;
            match parse(&buf[..have]) {
                Parsed::Header { len, source } if len == have => return Ok(source),
                Parsed::Incomplete => {}
                _ => return Err(Refused::Invalid),
            }
        }
    };
    tokio::time::timeout(timeout, reading)
        .await
        .unwrap_or(Err(Refused::TimedOut))
}

/// The header a pool with `send_proxy_protocol` opens a backend connection
/// with: `source` the client, `destination` the address it connected to.
/// Mixed families are written as IPv6 (an IPv4 address mapped).
pub fn header(version: Version, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = match (source, destination) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            (source, destination)
        }
        _ => (v6(source), v6(destination)),
    };
    match version {
        Version::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        Version::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (source, destination),
        )
        .build()
        .unwrap_or_default(),
    }
}

/// The header of a health check: it names no client.
pub fn local_header(version: Version) -> Vec<u8> {
    match version {
        Version::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        Version::V2 => {
            let mut h = V2_SIGNATURE.to_vec();
            // Version 2, LOCAL; unspecified family; no payload.
            h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            h
        }
    }
}

fn v6(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

pub use crate::config::ProxyProtocolVersion as Version;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_name_the_client_and_their_length() {
        let client: SocketAddr = "203.0.113.9:4711".parse().unwrap();
        let local: SocketAddr = "10.0.0.1:443".parse().unwrap();
        for version in [Version::V1, Version::V2] {
            let mut bytes = header(version, client, local);
            let len = bytes.len();
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(
                parse(&bytes),
                Parsed::Header {
                    len,
                    source: Some(client)
                },
                "{version:?}"
            );
            // Every proper prefix is incomplete, never a wrong answer.
            for cut in 1..len {
                assert_eq!(
                    parse(&bytes[..cut]),
                    Parsed::Incomplete,
                    "{version:?} {cut}"
                );
            }
            assert_eq!(
                parse(&local_header(version)),
                Parsed::Header {
                    len: local_header(version).len(),
                    source: None
                }
            );
        }
        let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(
            parse(&header(Version::V1, v6, local)),
            Parsed::Header {
                len: header(Version::V1, v6, local).len(),
                source: Some(v6)
            }
        );
    }

    #[test]
    fn anything_else_is_invalid() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4\r\n",
            b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY x",
            b"\x16\x03\x01",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Invalid | Parsed::Incomplete),
                "{bad:?}"
            );
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid);
        assert_eq!(parse(b"\x16\x03\x01\x02"), Parsed::Invalid);
        assert_eq!(parse(&[b'P'; 200][..]), Parsed::Invalid);
        let long = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse(&long), Parsed::Invalid);
    }
}
