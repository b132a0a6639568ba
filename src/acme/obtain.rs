//! Obtaining one certificate from an ACME server (instant-acme): the
//! account (created once, kept in `state_dir`), an order for one name, its
//! challenge answered by sluice itself, and the certificate written next to
//! the account.

use crate::certstore::{store, Obtained};
use crate::config::{AcmeChallenge, AcmeConfig};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The files of one name's certificate in `state_dir`.
pub fn cert_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// Loads a certificate kept in `state_dir` (from an earlier run or
/// issuance).
pub fn load_kept(dir: &Path, name: &str) -> Option<Obtained> {
    let (cert, key) = cert_paths(dir, name);
    if !cert.exists() {
        return None;
    }
    match crate::tls::Certificate::load(&cert, &key, true) {
        Ok(c) => Some(Obtained {
            key: c.key,
            not_after: c.not_after,
        }),
        Err(e) => {
            tracing::warn!(name, error = ?e, "kept ACME certificate unusable; obtaining a new one");
            None
        }
    }
}

async fn account(config: &AcmeConfig) -> Result<Account, Error> {
    let builder = || -> Result<_, Error> {
        Ok(match &config.ca {
            Some(ca) => Account::builder_with_root(ca)?,
            None => Account::builder()?,
        })
    };
    let path = config.state_dir.join("account.json");
    // Small files: read and written in place (this task serves nothing).
    if let Ok(text) = std::fs::read_to_string(&path) {
        let creds: AccountCredentials = serde_json::from_str(&text)?;
        return Ok(builder()?.from_credentials(creds).await?);
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await?;
    write_private(&path, serde_json::to_string(&creds)?.as_bytes())?;
    tracing::info!(directory = %config.directory, "ACME account created");
    Ok(account)
}

/// Writes a file only its owner may read (keys and the account).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)
}

/// Answers and later withdraws one challenge.
struct Answer {
    name: String,
    token: Option<String>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        store().set_alpn_challenge(&self.name, None);
        if let Some(t) = &self.token {
            store().set_http_answer(t, None);
        }
    }
}

/// The tls-alpn-01 certificate: self-signed for `name`, carrying the
/// digest of the key authorization in the acmeIdentifier extension.
fn alpn_cert(name: &str, digest: &[u8]) -> Result<Arc<rustls::sign::CertifiedKey>, Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// Obtains a certificate for `name`, writes it to `state_dir` and serves it.
pub async fn obtain(config: &AcmeConfig, name: &str) -> Result<i64, Error> {
    std::fs::create_dir_all(&config.state_dir)?;
    let account = account(config).await?;
    let identifiers = [Identifier::Dns(name.to_string())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut answers = Vec::new();
    {
        let mut auths = order.authorizations();
        while let Some(auth) = auths.next().await {
            let mut auth = auth?;
            match auth.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                s => return Err(format!("authorization is {s:?}").into()),
            }
            let kind = match config.challenge {
                AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
                AcmeChallenge::Http01 => ChallengeType::Http01,
            };
            let mut challenge = auth
                .challenge(kind.clone())
                .ok_or_else(|| format!("the ACME server offers no {kind:?} challenge"))?;
            let ka = challenge.key_authorization();
            let mut answer = Answer {
                name: name.to_string(),
                token: None,
            };
            match config.challenge {
                AcmeChallenge::TlsAlpn01 => {
                    store().set_alpn_challenge(name, Some(alpn_cert(name, ka.digest().as_ref())?))
                }
                AcmeChallenge::Http01 => {
                    store().set_http_answer(&challenge.token, Some(ka.as_str().to_string()));
                    answer.token = Some(challenge.token.clone());
                }
            }
            answers.push(answer);
            challenge.set_ready().await?;
        }
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90));
    let status = order.poll_ready(&retry).await?;
    if status != OrderStatus::Ready {
        return Err(format!("order is {status:?}, not ready").into());
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&retry).await?;
    drop(answers);
    let (cert_path, key_path) = cert_paths(&config.state_dir, name);
    write_private(&key_path, key_pem.as_bytes())?;
    write_private(&cert_path, chain_pem.as_bytes())?;
    let obtained = load_kept(&config.state_dir, name).ok_or("the new certificate does not load")?;
    let not_after = obtained.not_after;
    store().install(name, obtained);
    Ok(not_after)
}
