//! Secrets: where one comes from (`{env: NAME}` or `{file: PATH}`), the bytes read ([`Secret`],
//! never shown in `Debug` output), and the secret files other users may read or change
//! ([`LooseSecret`]: warned about, not refused).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, ConfigError, Validator};

/// Where a shared secret comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    /// Environment variable holding the secret.
    pub env: Option<String>,
    /// File holding the secret (one trailing newline is ignored).
    pub file: Option<PathBuf>,
}

/// Secret bytes that never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(pub(crate) Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    /// Constant-time comparison (used to tell whether a reload changed a provider's keys).
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret {}

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// A secret file that users other than jwtgate's may read or change: its mode lets anyone read
/// or write it, or a group jwtgate does not run as, or another user (not root) owns it. Warned
/// about at start and at each reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseSecret {
    /// The field naming it, e.g. `providers[0].hmac_secret.file`.
    pub field: String,
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

impl LooseSecret {
    /// `Some` when the file at `path` may be read or written by others, or by its group while
    /// that is not the group jwtgate runs as (a Kubernetes Secret mounted with `fsGroup` is
    /// group-readable by the pod's own group, which is fine), or belongs to another user.
    pub(super) fn of(field: &str, path: &Path) -> Option<Self> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.permissions().mode() & 0o7777;
        // `/proc/self` belongs to the process's effective user and group.
        let me = std::fs::metadata("/proc/self").ok();
        let other_group = me.as_ref().is_none_or(|m| m.gid() != meta.gid());
        let other_owner = me.as_ref().is_some_and(|m| m.uid() != meta.uid()) && meta.uid() != 0;
        let loose = mode & 0o006 != 0 || (mode & 0o060 != 0 && other_group) || other_owner;
        loose.then(|| Self {
            field: field.to_owned(),
            path: path.to_owned(),
            mode,
        })
    }

    /// Logs one warning per loose secret file of `config`.
    pub fn warn(config: &Config) {
        for s in &config.loose_secrets {
            tracing::warn!(field = %s.field, path = %s.path.display(), mode = %format!("{:04o}", s.mode), "secret file other users may read or change: chmod 0600 (or 0400; 0440 with the group jwtgate runs as; in Kubernetes the Secret volume's defaultMode), owned by jwtgate's user or root");
        }
    }
}

impl Validator<'_> {
    /// Reads `{env: NAME}` or `{file: PATH}` (one trailing newline dropped).
    pub(super) fn secret(&self, f: &str, secret: RawSecret) -> Result<Vec<u8>, ConfigError> {
        match (secret.env, secret.file) {
            (Some(var), None) => std::env::var(&var)
                .map(String::into_bytes)
                .map_err(|_| self.err(format!("{f}.env"), format!("environment variable {var} is not set"))),
            (None, Some(path)) => self.secret_file(&format!("{f}.file"), &path),
            _ => Err(self.err(f, "give exactly one of `env` or `file`")),
        }
    }

    /// A secret read from the file at `path` (relative to the config file), bounded in size, one
    /// trailing newline (`\n` or `\r\n`) dropped; `field` names it in errors.
    pub(super) fn secret_file(&self, field: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
        let path = self.base.join(path);
        let mut bytes = crate::file::read(&path, crate::file::MAX_FILE_BYTES)
            .map_err(|e| self.err(field, format!("cannot read {}: {e}", path.display())))?;
        self.loose.borrow_mut().extend(LooseSecret::of(field, &path));
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_others_may_read_are_listed_and_private_ones_are_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, "0123456789abcdef0123456789abcdef").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("loose.secret", 0o644);
        write("private.secret", 0o600);
        write("own-group.secret", 0o440);
        write("writable.secret", 0o602);
        let text = "providers:\n  - { name: a, issuer: a, hmac_secret: { file: loose.secret } }\n  - { name: b, issuer: b, hmac_secret: { file: private.secret } }\n  - { name: c, issuer: c, hmac_secret: { file: own-group.secret } }\n  - { name: d, issuer: d, hmac_secret: { file: writable.secret } }\nadmin: { token: { file: loose.secret } }\n";
        let c = Config::parse(text, "test.yaml", dir.path()).unwrap();
        let fields: Vec<&str> = c.loose_secrets.iter().map(|s| s.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "providers[0].hmac_secret.file",
                "providers[3].hmac_secret.file",
                "admin.token.file"
            ]
        );
        assert_eq!(c.loose_secrets[0].mode, 0o644);
    }
}
