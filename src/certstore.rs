//! Certificates obtained at run time (ACME) and the answers to ACME
//! challenges, shared by the TLS listeners' certificate resolvers, the
//! HTTP-01 responder and the ACME manager (`acme`), which fills it.
//!
//! One store per process: the listeners of a reload and the ones they
//! replace serve the same names, and a certificate obtained while a reload
//! runs must reach both. Reads are lock-free (an `ArcSwap` of the map) on
//! the handshake path; challenges are rare and take a short lock.

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A certificate obtained for one name.
#[derive(Debug)]
pub struct Obtained {
    pub key: Arc<CertifiedKey>,
    /// Unix time after which it is expired.
    pub not_after: i64,
}

#[derive(Default)]
pub struct CertStore {
    certs: ArcSwap<HashMap<String, Arc<Obtained>>>,
    /// tls-alpn-01: the challenge certificate of each name being validated.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// http-01: token -> key authorization.
    tokens: Mutex<HashMap<String, String>>,
}

/// The process's store.
pub fn store() -> &'static CertStore {
    static STORE: OnceLock<CertStore> = OnceLock::new();
    STORE.get_or_init(CertStore::default)
}

impl CertStore {
    /// The certificate obtained for `name` (lower case), if any.
    pub fn cert(&self, name: &str) -> Option<Arc<Obtained>> {
        self.certs.load().get(name).cloned()
    }

    /// Serves `cert` for `name` from the next handshake on.
    pub fn install(&self, name: &str, cert: Obtained) {
        let cert = Arc::new(cert);
        self.certs.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(name.to_string(), cert.clone());
            m
        });
    }

    /// The tls-alpn-01 challenge certificate for `name`, while one is set.
    pub fn alpn_challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn.lock().ok()?.get(name).cloned()
    }

    pub fn set_alpn_challenge(&self, name: &str, cert: Option<Arc<CertifiedKey>>) {
        if let Ok(mut m) = self.alpn.lock() {
            match cert {
                Some(c) => m.insert(name.to_string(), c),
                None => m.remove(name),
            };
        }
    }

    /// The http-01 answer for a token, while the challenge is open.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        self.tokens.lock().ok()?.get(token).cloned()
    }

    pub fn set_http_answer(&self, token: &str, answer: Option<String>) {
        if let Ok(mut m) = self.tokens.lock() {
            match answer {
                Some(a) => m.insert(token.to_string(), a),
                None => m.remove(token),
            };
        }
    }
}
