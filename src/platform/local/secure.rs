//! What a secured group needs locally: a certificate authority and a server certificate
//! for in-transit encryption, and the AUTH token kept apart from the state.
//!
//! A rehearsal of a group with `TransitEncryptionEnabled` and an `AuthToken` must exercise
//! TLS and AUTH like the real group does, so the nodes serve TLS only and require the
//! token. The token is the one secret the local platform holds: it lives in a file only its
//! owner can read, never in `local-state.json`, the journal or a node's command line.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Why the secrets of a group could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    /// The certificates could not be generated.
    #[error("cannot generate the TLS certificates of {group}")]
    Certificate {
        group: String,
        #[source]
        source: rcgen::Error,
    },
    /// A file of the group's secrets could not be written or read.
    #[error("cannot use {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The folder of a group's TLS files (`ca.pem`, `cert.pem`, `key.pem`).
pub fn certs_dir(run_dir: &Path, group: &str) -> PathBuf {
    run_dir.join("secrets").join(group).join("tls")
}

fn token_file(run_dir: &Path, group: &str) -> PathBuf {
    run_dir.join("secrets").join(group).join("auth-token")
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecureError> {
    let io = |source| SecureError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io)
}

/// Makes a CA and a server certificate for `localhost` / `127.0.0.1`, signed by it, unless
/// the group has them already. Returns their folder.
pub fn ensure_certs(run_dir: &Path, group: &str) -> Result<PathBuf, SecureError> {
    let dir = certs_dir(run_dir, group);
    if ["ca.pem", "cert.pem", "key.pem"]
        .iter()
        .all(|f| dir.join(f).exists())
    {
        return Ok(dir);
    }
    let failed = |source| SecureError::Certificate {
        group: group.to_string(),
        source,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{group} rehearsal CA"));
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(failed)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().map_err(failed)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(failed)?;
    write_private(&dir.join("ca.pem"), ca_cert.pem().as_bytes())?;
    write_private(&dir.join("key.pem"), key.serialize_pem().as_bytes())?;
    write_private(&dir.join("cert.pem"), cert.pem().as_bytes())?;
    Ok(dir)
}

/// Keeps the group's AUTH token.
pub fn store_token(run_dir: &Path, group: &str, token: &str) -> Result<(), SecureError> {
    write_private(&token_file(run_dir, group), token.as_bytes())
}

/// The group's AUTH token, as stored.
pub fn token(run_dir: &Path, group: &str) -> Result<String, SecureError> {
    let path = token_file(run_dir, group);
    std::fs::read_to_string(&path).map_err(|source| SecureError::Io { path, source })
}

/// Why ElastiCache would refuse `token` as an AUTH token, if it would: 16 to 128 printable
/// ASCII characters, of the special ones only `!&#$^<>-`.
pub fn token_problem(token: &str) -> Option<String> {
    let len = token.chars().count();
    if !(16..=128).contains(&len) {
        return Some(format!(
            "it has {len} characters; ElastiCache allows 16 to 128"
        ));
    }
    token
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!&#$^<>-".contains(*c)))
        .map(|c| {
            format!(
                "it contains `{}`; ElastiCache allows letters, digits and !&#$^<>- only",
                c.escape_default()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_elasticache_would_refuse_are_named() {
        assert_eq!(token_problem("abcdefghijklmnop-!&#$^<>"), None);
        assert_eq!(
            token_problem("short").as_deref(),
            Some("it has 5 characters; ElastiCache allows 16 to 128")
        );
        assert_eq!(
            token_problem("abcdefghijklmnop@q").as_deref(),
            Some("it contains `@`; ElastiCache allows letters, digits and !&#$^<>- only")
        );
    }

    #[test]
    fn certificates_are_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let certs = ensure_certs(dir.path(), "g").unwrap();
        let key = std::fs::read_to_string(certs.join("key.pem")).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        let mode = std::fs::metadata(certs.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        ensure_certs(dir.path(), "g").unwrap();
        assert_eq!(std::fs::read_to_string(certs.join("key.pem")).unwrap(), key);
    }
}
