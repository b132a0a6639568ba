//! Sticky sessions (`sticky = { cookie, ttl }`): the opaque token that
//! names a backend in a cookie, and the cookie itself. The pool keeps each
//! member's token; the request path reads the cookie (`proxy::headers`)
//! and sets it on answers (`proxy::Target::sticky_cookie`).

/// The sticky token of backend `addr` of pool `pool`: a fixed hash, so every
/// instance with the same config agrees without talking, and the cookie
/// shows no address (it is not a secret either: anyone who can guess the
/// addresses can compute it).
pub fn token(pool: &str, addr: &str) -> u64 {
    crate::balance::hash_bytes(format!("sluice-sticky\0{pool}\0{addr}").as_bytes())
}

/// The `Set-Cookie` value that pins a client to backend `addr`.
pub fn cookie(config: &crate::config::StickyConfig, pool: &str, addr: &str) -> String {
    let mut c = format!(
        "{}={:016x}; Path=/; HttpOnly",
        config.cookie,
        token(pool, addr)
    );
    if let Some(ttl) = config.ttl {
        c.push_str(&format!("; Max-Age={}", ttl.as_secs().max(1)));
    }
    c
}
