//! Basic authentication (`route.basic_auth`): htpasswd files of bcrypt
//! hashes, loaded with the config (so `--check` and a reload name a bad
//! file by its key, and SIGHUP re-reads it).
//!
//! bcrypt is slow on purpose (tens of milliseconds a check), so a check runs
//! on tokio's blocking pool, at most `MAX_CHECKS` at once: a client guessing
//! passwords waits in that queue and costs the workers nothing. A verified
//! credential is remembered (a keyed hash of it, never the password) in a
//! bounded cache, so steady traffic from users who logged in pays no bcrypt.

use base64::Engine;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// bcrypt checks running at once, for every route.
const MAX_CHECKS: usize = 4;
/// Verified credentials remembered per route.
const CACHE: usize = 4096;

fn checks() -> &'static Arc<Semaphore> {
    static CHECKS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    CHECKS.get_or_init(|| Arc::new(Semaphore::new(MAX_CHECKS)))
}

/// One htpasswd file: user name -> bcrypt hash.
pub struct Users {
    hashes: HashMap<String, String>,
    verified: Mutex<std::collections::HashSet<u64>>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.hashes.len())
            .finish()
    }
}

impl Users {
    /// Parses htpasswd text: `user:hash` lines, bcrypt hashes (`$2y$`,
    /// `$2b$`, `$2a$`) only; empty lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut hashes = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {}: expected user:hash", n + 1));
            };
            if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
                return Err(format!(
                    "line {}: the hash of {user:?} is not bcrypt (htpasswd -B makes one)",
                    n + 1
                ));
            }
            hashes.insert(user.to_string(), hash.to_string());
        }
        Ok(Users {
            hashes,
            verified: Mutex::new(Default::default()),
            hasher: Default::default(),
        })
    }

    /// Whether an `Authorization` value holds a user and password of this
    /// file.
    pub async fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(basic) else {
            return false;
        };
        let Some(hash) = self.hashes.get(&user) else {
            return false;
        };
        let seen = self.hasher.hash_one((&user, &password, hash));
        if self.verified.lock().is_ok_and(|v| v.contains(&seen)) {
            return true;
        }
        let Ok(_turn) = checks().clone().acquire_owned().await else {
            return false;
        };
        let hash = hash.clone();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                // Bounded: forget everything at the cap (users log in again,
                // once).
                if v.len() >= CACHE {
                    v.clear();
                }
                v.insert(seen);
            }
        }
        ok
    }
}

/// The user and password of a `Basic` authorization value.
fn basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b}").into_bytes()
    }

    #[tokio::test]
    async fn bcrypt_users_and_a_cache_of_verified_credentials() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let users = Users::parse(&format!("# comment\nalice:{hash}\n\n")).unwrap();
        assert!(users.check(Some(&header("alice", "s3cret"))).await);
        assert!(users.verified.lock().unwrap().len() == 1);
        assert!(
            users.check(Some(&header("alice", "s3cret"))).await,
            "cached"
        );
        assert!(!users.check(Some(&header("alice", "wrong"))).await);
        assert!(!users.check(Some(&header("bob", "s3cret"))).await);
        assert!(!users.check(Some(b"Bearer x")).await);
        assert!(!users.check(None).await);
        assert!(Users::parse("carol:{SHA}abc").is_err());
        // The example config's file: user "ops", password "change-me".
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/htpasswd");
        let example = Users::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(example.check(Some(&header("ops", "change-me"))).await);
        assert!(Users::parse("no colon").is_err());
    }
}
