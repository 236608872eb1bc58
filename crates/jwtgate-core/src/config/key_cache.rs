//! `key_cache:`, where `jwtgate serve` keeps each fetching provider's last good key set: its
//! schema, its validated form ([`KeyCacheConfig`]) and its validator.

use std::path::PathBuf;

use serde::Deserialize;

use super::revocation::StoreConfig;
use super::{ConfigError, Validator};

/// `key_cache:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyCache {
    /// Default: `keys` inside the embedded revocation store's directory (`jwtgate-data/keys`).
    pub dir: Option<PathBuf>,
}

/// `key_cache:`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCacheConfig {
    /// The directory (created at start, mode 0700).
    pub dir: PathBuf,
}

impl Validator<'_> {
    /// `key_cache`; without `dir`, `keys` beside the embedded revocation store's data.
    pub(super) fn key_cache(&self, raw: RawKeyCache, store: &StoreConfig) -> Result<KeyCacheConfig, ConfigError> {
        Ok(KeyCacheConfig {
            dir: match (raw.dir, store) {
                (Some(dir), _) if dir.as_os_str().is_empty() => return Err(self.err("key_cache.dir", "is empty")),
                (Some(dir), _) => self.base.join(dir),
                (None, StoreConfig::Embedded { path }) => path.join("keys"),
                (None, StoreConfig::Redis { .. }) => self.base.join("jwtgate-data").join("keys"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::{MINIMAL, err, parse};

    #[test]
    fn key_cache_dir_defaults_beside_the_revocation_data_and_is_validated() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.key_cache.dir, Path::new("./jwtgate-data/keys"));
        let c = parse(&format!("revocation: {{ path: /var/lib/jwtgate }}\n{MINIMAL}")).unwrap();
        assert_eq!(c.key_cache.dir, Path::new("/var/lib/jwtgate/keys"));
        let c = parse(&format!("key_cache: {{ dir: /cache }}\n{MINIMAL}")).unwrap();
        assert_eq!(c.key_cache.dir, Path::new("/cache"));
        let e = err(&format!("key_cache: {{ dir: \"\" }}\n{MINIMAL}"));
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("key_cache.dir", "is empty"));
        let e = err(&format!("key_cache: {{ directory: /x }}\n{MINIMAL}"));
        assert!(e.field.starts_with("key_cache"), "{e}");
    }
}
