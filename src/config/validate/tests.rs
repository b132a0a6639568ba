use super::super::Config;

fn errors(toml: &str) -> Vec<String> {
    match Config::parse(toml) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const MIN: &str = r#"
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
pool = "api"
[pool.api]
backends = [{ addr = "127.0.0.1:9000" }]
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(MIN).unwrap();
    assert_eq!(c.listeners[0].max_header_bytes, 65536);
    assert_eq!(
        c.listeners[0].idle_timeout,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(c.routes[0].name, "api");
    assert_eq!(c.routes[0].path_prefix, "/");
    assert_eq!(c.pools[0].backends[0].weight, 1);
    assert!(c.admin.is_none());
}

#[test]
fn the_admin_listener_defaults_to_loopback_and_never_shares_a_listener_port() {
    let c = Config::parse(&format!("[admin]\n{MIN}")).unwrap();
    let admin = c.admin.unwrap().bind;
    assert!(admin.ip().is_loopback(), "{admin}");
    assert_eq!(admin.port(), 9901);
    let fixed = MIN.replace("127.0.0.1:0", "0.0.0.0:8080");
    let clash = format!("[admin]\nbind = \"127.0.0.1:8080\"\n{fixed}");
    let errs = errors(&clash);
    assert!(
        errs.iter().any(|e| e.contains("is the admin listener's")),
        "{errs:?}"
    );
}

#[test]
fn a_health_check_path_is_parsed_as_the_target_it_becomes() {
    let with = |path: &str| format!("{MIN}[pool.api.health_check]\npath = {path:?}\n");
    let c = Config::parse(&with("/health?full=1")).unwrap();
    let hc = c.pools[0].health_check.as_ref().unwrap();
    assert_eq!(hc.path.as_str(), "/health?full=1");
    for bad in ["/a b", "health", "/x#frag", "/a\tb"] {
        let errs = errors(&with(bad));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("pool.api.health_check.path: ")),
            "{bad:?}: {errs:?}"
        );
    }
}

#[test]
fn spec_error_format_for_missing_port() {
    let t = MIN.replace("127.0.0.1:9000", "10.0.0.1");
    assert_eq!(
        errors(&t),
        vec![r#"pool.api.backends[0].addr: invalid socket address "10.0.0.1""#]
    );
}

#[test]
fn every_error_is_reported_with_its_path() {
    let t = r#"
[runtime]
shutdown_grace = "soon"
colour = "blue"
[[listener]]
name = "a"
bind = "nope"
[[listener]]
name = "a"
bind = "127.0.0.1:1"
idle_timeout = "5 parsecs"
bogus = 1
[[route]]
pool = "missing"
listeners = ["a", "zzz"]
[[route]]
pool = "empty"
host = "bad host"
[pool.empty]
backends = []
[pool.w]
strategy = "fastest"
backends = [{ addr = "127.0.0.1:1", weight = 0 }, { addr = "127.0.0.1:1" }]
"#;
    let errs = errors(t);
    let expect = [
        "runtime.colour: unknown key",
        "listener[1].bogus: unknown key",
        "runtime.shutdown_grace: invalid duration",
        "listener[0].bind: invalid socket address \"nope\"",
        "listener[1].name: duplicate listener name",
        "listener[1].idle_timeout: invalid duration",
        "route[0].pool: unknown pool \"missing\"",
        "route[0].listeners[1]: unknown listener \"zzz\"",
        "route[1].host: invalid host",
        "pool.empty.backends: a pool needs at least one backend",
        "pool.w.strategy: unknown strategy",
        "pool.w.backends[0].weight: must be between 1 and 256, got 0",
        "pool.w.backends[1].addr: duplicate backend",
    ];
    for x in expect {
        assert!(
            errs.iter().any(|e| e.starts_with(x)),
            "missing {x:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
}

#[test]
fn type_errors_name_their_path() {
    let t = MIN.replace(
        "backends = [{ addr = \"127.0.0.1:9000\" }]",
        "backends = [{ addr = 5 }]",
    );
    let errs = errors(&t);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("pool.api.backends[0].addr: line 8, column 22: invalid type"),
        "{errs:?}"
    );
}

#[test]
fn hosts_and_prefixes_are_normalised() {
    let t = MIN.replace(
        "pool = \"api\"",
        "pool = \"api\"\nhost = \"*.Example.COM\"\npath_prefix = \"/v1/\"",
    );
    let c = Config::parse(&t).unwrap();
    assert_eq!(
        c.routes[0].host,
        Some(super::HostMatch::Wildcard(".example.com".into()))
    );
    assert_eq!(c.routes[0].path_prefix, "/v1");
}

#[test]
fn unresolvable_host_is_an_error() {
    let t = MIN.replace("127.0.0.1:9000", "no-such-host.invalid:80");
    let errs = errors(&t);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("pool.api.backends[0].addr: cannot resolve"),
        "{errs:?}"
    );
}

#[test]
fn protocol_is_checked_against_tls_and_the_proxy_protocol() {
    let with = |extra: &str| format!("{MIN}{extra}");
    let c = Config::parse(&with("protocol = \"h2c\"\n")).unwrap();
    assert_eq!(c.pools[0].protocol, crate::config::UpstreamProtocol::H2c);
    assert_eq!(
        Config::parse(MIN).unwrap().pools[0].protocol,
        crate::config::UpstreamProtocol::Http1
    );
    let cases = [
        ("protocol = \"h3\"\n", "pool.api.protocol: unknown protocol"),
        (
            "protocol = \"h2\"\n",
            "pool.api.protocol: h2 is HTTP/2 over TLS",
        ),
        (
            "protocol = \"h2c\"\n[pool.api.tls]\nverify = false\n",
            "pool.api.protocol: h2c is cleartext",
        ),
        (
            "protocol = \"h2c\"\nsend_proxy_protocol = \"v2\"\n",
            "pool.api.send_proxy_protocol: cannot be used with protocol h2",
        ),
    ];
    for (extra, want) in cases {
        let errs = errors(&with(extra));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{extra}: {errs:?}"
        );
    }
}
