//! Config for running many instances and for certificates obtained by
//! sluice itself: the `[redis]` and `[acme]` tables.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    pub directory: String,
    pub email: Option<String>,
    pub state_dir: PathBuf,
    /// PEM roots to trust for the directory (a private or test ACME server).
    pub ca: Option<PathBuf>,
    pub challenge: AcmeChallenge,
    pub renew_before: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// Answered by the TLS listener itself (ALPN `acme-tls/1`).
    TlsAlpn01,
    /// Answered on plaintext listeners at `/.well-known/acme-challenge/`.
    Http01,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: RedisUrl,
    /// Each call's bound; slower or failing calls fall back to the local
    /// bucket.
    pub timeout: Duration,
}

/// A Redis URL, which may hold a password: Debug and Display show it with
/// the password replaced, so it never reaches a log line or an API.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn new(url: String) -> RedisUrl {
        RedisUrl(url)
    }

    /// The URL as written, password included: for the client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".into();
        };
        match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}
