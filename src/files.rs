//! What a config names besides itself, loaded right after it is validated:
//! certificates (`tls`) and htpasswd files (`auth`). `--check`, start and a
//! reload load them the same way, and a bad file is a config error naming
//! its key.

use crate::auth::Users;
use crate::config::{Config, ConfigError, ConfigErrors, LoadOptions};
use std::sync::Arc;

/// The loaded files of one config.
#[derive(Debug, Default)]
pub struct Files {
    pub tls: crate::tls::Tls,
    /// Per route (in config order): its basic-auth users, if it has any.
    pub users: Vec<Option<Arc<Users>>>,
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
        let read = if opts.read_files {
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))
        } else {
            Err(format!(
                "cannot read {}: file access is off",
                file.display()
            ))
        };
        match read
            .and_then(|text| Users::parse(&text).map_err(|e| format!("{}: {e}", file.display())))
        {
            Ok(u) => users.push(Some(Arc::new(u))),
            Err(message) => {
                errors.push(ConfigError { path, message });
                users.push(None);
            }
        }
    }
    match tls {
        Ok(tls) if errors.is_empty() => Ok(Files { tls, users }),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(mut e) => {
            e.0.append(&mut errors);
            Err(e)
        }
    }
}
