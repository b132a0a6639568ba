//! What a config names besides itself, loaded right after it is validated:
//! certificates (`tls`) and htpasswd files (`auth`). `--check`, start and a
//! reload load them the same way, and a bad file is a config error naming
//! its key.

use crate::auth::Users;
use crate::config::{Config, ConfigError, ConfigErrors, LoadOptions};
use std::sync::Arc;

/// The loaded files of one config.
#[derive(Debug, Default, Clone)]
pub struct Files {
    pub tls: crate::tls::Tls,
    /// Per route (in config order): its basic-auth users, if it has any.
    pub users: Vec<Option<Arc<Users>>>,
    /// The admin write token (`admin.token_file`), if one is set.
    pub admin_token: Option<AdminToken>,
    /// Per pool with `[pool.X.tls]`: its rustls client settings.
    pub upstream_tls: std::collections::HashMap<String, Arc<rustls::ClientConfig>>,
}

/// The bearer token of the admin write endpoints. Never printed; compared
/// in constant time.
#[derive(Clone, Default)]
pub struct AdminToken(Arc<str>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl AdminToken {
    /// Whether `given` is the token, in time that depends only on the
    /// lengths (so a guesser learns nothing from how long a refusal takes).
    pub fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = want.len() ^ given.len();
        for (i, &w) in want.iter().enumerate() {
            diff |= usize::from(w ^ given.get(i).copied().unwrap_or(0));
        }
        std::hint::black_box(diff) == 0
    }
}

/// A text file the config names, or the error to report under its key.
fn read_text(file: &std::path::Path, opts: LoadOptions) -> Result<String, String> {
    if !opts.read_files {
        return Err(format!(
            "cannot read {}: file access is off",
            file.display()
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

pub fn load(config: &mut Config, opts: LoadOptions) -> Result<Files, ConfigErrors> {
    let tls = crate::tls::load(config, opts);
    let mut errors = Vec::new();
    let mut users = Vec::new();
    for (i, r) in config.routes.iter().enumerate() {
        let Some(auth) = &r.basic_auth else {
            users.push(None);
            continue;
        };
        let path = format!("route[{i}].basic_auth.users_file");
        let file = &auth.users_file;
        match read_text(file, opts)
            .and_then(|text| Users::parse(&text).map_err(|e| format!("{}: {e}", file.display())))
        {
            Ok(u) => users.push(Some(Arc::new(u))),
            Err(message) => {
                errors.push(ConfigError { path, message });
                users.push(None);
            }
        }
    }
    let mut upstream_tls = std::collections::HashMap::new();
    for p in &config.pools {
        if let Some(t) = &p.tls {
            match crate::upstream_tls::client_config(&p.name, t, p.protocol, opts.read_files) {
                Ok(c) => {
                    upstream_tls.insert(p.name.clone(), c);
                }
                Err((path, message)) => errors.push(ConfigError { path, message }),
            }
        }
    }
    let mut admin_token = None;
    if let Some(file) = config.admin.as_ref().and_then(|a| a.token_file.as_ref()) {
        match read_text(file, opts) {
            Ok(text) if !text.trim().is_empty() => {
                admin_token = Some(AdminToken(text.trim().into()));
            }
            Ok(_) => errors.push(ConfigError {
                path: "admin.token_file".into(),
                message: format!("{} is empty", file.display()),
            }),
            Err(message) => errors.push(ConfigError {
                path: "admin.token_file".into(),
                message,
            }),
        }
    }
    match tls {
        Ok(tls) if errors.is_empty() => Ok(Files {
            tls,
            users,
            admin_token,
            upstream_tls,
        }),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(mut e) => {
            e.0.append(&mut errors);
            Err(e)
        }
    }
}
