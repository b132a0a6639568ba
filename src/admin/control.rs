//! Runtime control: `PUT /api/v1/pools/{pool}/backends/{addr}` sets a
//! backend's state (ready / drain / maint) and weight, as HAProxy's Runtime
//! API `set server state` and `set server weight`.
//!
//! The change is written to the backend's state, which lives outside the
//! config snapshot and so outlives reloads while the backend stays; a
//! weight change also rebuilds the snapshot from its own config, because
//! strategies build their schedules and rings once per snapshot.

use super::{backend_json, percent_decode, reply};
use crate::backend::AdminState;
use crate::snapshot::Shared;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// The largest weight the API takes (as HAProxy's `set server weight`).
pub const MAX_WEIGHT: u64 = 256;

/// What a write request asks for, parsed and checked before anything
/// changes.
#[derive(Debug, PartialEq)]
struct Change {
    state: Option<AdminState>,
    /// `Some(None)`: back to the file's weight.
    weight: Option<Option<u32>>,
}

fn parse_change(body: &[u8]) -> Result<Change, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    let mut change = Change {
        state: None,
        weight: None,
    };
    for (k, v) in obj {
        match k.as_str() {
            "state" => {
                let s = v.as_str().ok_or("state must be a string")?;
                change.state =
                    Some(AdminState::parse(s).ok_or_else(|| {
                        format!("state: {s:?} is not one of ready, drain, maint")
                    })?);
            }
            "weight" if v.is_null() => change.weight = Some(None),
            "weight" => {
                let w = v.as_u64().filter(|&w| w <= MAX_WEIGHT).ok_or_else(|| {
                    format!("weight: {v} is not an integer in 0..{MAX_WEIGHT} or null")
                })?;
                change.weight = Some(Some(w as u32));
            }
            other => return Err(format!("unknown key {other:?} (state, weight)")),
        }
    }
    if change.state.is_none() && change.weight.is_none() {
        return Err("nothing to change: give state or weight".into());
    }
    Ok(change)
}

/// Whether the request carries the admin token: 403 without a token file,
/// 401 with a missing or wrong token.
fn authorize(req: &Request<Incoming>, shared: &Shared) -> Result<(), Box<Response<Full<Bytes>>>> {
    let snap = shared.snapshot();
    let Some(token) = snap.admin_token() else {
        return Err(Box::new(reply(
            StatusCode::FORBIDDEN,
            TEXT,
            "writes are off: set admin.token_file\n",
        )));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(|t| t.trim_ascii());
    if given.is_some_and(|t| token.matches(t)) {
        return Ok(());
    }
    let mut r = reply(
        StatusCode::UNAUTHORIZED,
        TEXT,
        "a valid bearer token is required\n",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"sluice admin\""),
    );
    Err(Box::new(r))
}

/// `PUT /api/v1/pools/{pool}/backends/{addr}` (`rest` is `{pool}/backends/{addr}`).
pub async fn put_backend(
    req: Request<Incoming>,
    rest: &str,
    shared: &Shared,
) -> Response<Full<Bytes>> {
    if let Err(refused) = authorize(&req, shared) {
        return *refused;
    }
    let Some((pool_name, addr)) = rest
        .split_once("/backends/")
        .and_then(|(p, a)| Some((percent_decode(p)?, percent_decode(a)?)))
    else {
        return reply(StatusCode::NOT_FOUND, TEXT, "not found\n");
    };
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("cannot read the body: {e}\n"),
            )
        }
    };
    let change = match parse_change(&body) {
        Ok(c) => c,
        Err(e) => return reply(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
    };
    let snap = shared.snapshot();
    let Some(pool) = snap.pools.get(&pool_name) else {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no pool {pool_name:?}\n"),
        );
    };
    let Some(member) = pool.members.iter().find(|m| *m.backend.addr == *addr) else {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("pool {pool_name:?} has no backend {addr:?}\n"),
        );
    };
    let backend = member.backend.clone();
    if let Some(state) = change.state {
        if state == AdminState::Ready && backend.admin_state() != AdminState::Ready {
            // Back in service: a slow start ramps it up again.
            backend.start_ramp();
        }
        backend.set_admin_state(state);
    }
    if let Some(weight) = change.weight {
        backend.set_weight_override(weight);
        shared.rebuild();
    }
    tracing::info!(
        pool = %pool_name,
        backend = %addr,
        state = backend.admin_state().name(),
        weight = ?backend.weight_override(),
        "backend changed at run time"
    );
    // Answer from the snapshot the change is in.
    let snap = shared.snapshot();
    let json = snap.pools.get(&pool_name).and_then(|p| {
        let i = p.members.iter().position(|m| *m.backend.addr == *addr)?;
        Some(backend_json(p, i))
    });
    match json {
        Some(j) => reply(StatusCode::OK, JSON, j.to_string()),
        // A reload removed it meanwhile.
        None => reply(StatusCode::NOT_FOUND, TEXT, "the backend left the config\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_before_anything_changes() {
        assert_eq!(
            parse_change(br#"{"state":"drain"}"#),
            Ok(Change {
                state: Some(AdminState::Drain),
                weight: None
            })
        );
        assert_eq!(
            parse_change(br#"{"weight":null,"state":"ready"}"#),
            Ok(Change {
                state: Some(AdminState::Ready),
                weight: Some(None)
            })
        );
        assert_eq!(
            parse_change(br#"{"weight":256}"#).map(|c| c.weight),
            Ok(Some(Some(256)))
        );
        for bad in [
            &br#"{"weight":257}"#[..],
            br#"{"weight":-1}"#,
            br#"{"weight":1.5}"#,
            br#"{"state":"down"}"#,
            br#"{"colour":"red"}"#,
            br#"{}"#,
            br#"[]"#,
            b"state=drain",
        ] {
            assert!(
                parse_change(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
