//! The client's address behind trusted proxies.

use ipnet::IpNet;
use std::net::IpAddr;

/// The client's address: the peer, unless the peer is a trusted proxy, in
/// which case the X-Forwarded-For values (several fields count as one
/// comma-separated list) are walked from the right past trusted hops: the
/// rightmost untrusted address is the first one a trusted hop saw.
pub fn client_ip<'v>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'v [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    // Fields are few: collect them to walk right to left.
    let values: Vec<&[u8]> = forwarded_for.collect();
    let mut last = peer;
    for hop in values.iter().rev().flat_map(|v| v.rsplit(|&b| b == b',')) {
        let parsed = std::str::from_utf8(hop)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok());
        match parsed {
            Some(ip) if is_trusted(&ip) => last = ip,
            Some(ip) => return ip,
            None => return last,
        }
    }
    last
}

/// The token in a request's cookies named `name`, if any.
pub fn cookie_token(head: &dyn super::Head, name: &str) -> Option<u64> {
    let mut found = None;
    head.each("cookie", &mut |value| {
        if found.is_some() {
            return;
        }
        found = value.split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (n, v) = (&pair[..eq], &pair[eq + 1..]);
            if n != name.as_bytes() || v.len() != 16 {
                return None;
            }
            u64::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
        });
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_only_trusts_trusted_peers() {
        let xff: &[&[u8]] = &[b"6.6.6.6, 7.7.7.7", b"10.0.0.2"];
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, xff.iter().copied(), &trusted),
            "7.7.7.7".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_ip(outsider, xff.iter().copied(), &trusted), outsider);
        assert_eq!(client_ip(peer, xff.iter().copied(), &[]), peer);
        let garbage: &[&[u8]] = &[b"junk"];
        assert_eq!(client_ip(peer, garbage.iter().copied(), &trusted), peer);
    }
}
