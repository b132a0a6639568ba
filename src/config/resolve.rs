//! Backend host names to addresses, with hickory's resolver: at load (when
//! `[dns] nameservers` are set; else the system resolver, as before) and
//! on every `dns_refresh` (see `discovery`).

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::Resolver;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// By (pool, backend addr as written): the addresses DNS gave the name (see
/// `discovery`; the snapshot carries it).
pub type Discovered = HashMap<(String, String), Vec<SocketAddr>>;

/// A resolver that asks `nameservers` (empty: the system's configuration),
/// caching nothing: `dns_refresh` is the refresh interval, not the TTL.
pub fn resolver(nameservers: &[SocketAddr]) -> Option<Resolver<TokioRuntimeProvider>> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if nameservers.is_empty() {
        Resolver::builder(provider).ok()?
    } else {
        let servers = nameservers
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        Resolver::builder_with_config(ResolverConfig::from_parts(None, vec![], servers), provider)
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    builder.build().ok()
}

/// Every address of `host`, with `port`, sorted (so an unchanged answer
/// compares equal whatever order the server gave).
pub async fn lookup(
    resolver: &Resolver<TokioRuntimeProvider>,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    // A trailing dot: the name as given, no search domains.
    let fqdn = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let found = resolver
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let mut addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err("no address".into());
    }
    Ok(addrs)
}

/// `lookup` from synchronous code (config loading), on a thread of its own
/// with a runtime of its own, so it works inside and outside a runtime.
pub fn lookup_blocking(
    host: &str,
    port: u16,
    nameservers: &[SocketAddr],
) -> Result<Vec<SocketAddr>, String> {
    let (host, servers) = (host.to_string(), nameservers.to_vec());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let r = resolver(&servers).ok_or("cannot build a DNS resolver")?;
            lookup(&r, &host, port).await
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the DNS lookup failed".into()))
}
