//! The last good key set of every fetching provider, on disk (`key_cache.dir`), so that a
//! replica restarted while its issuer is down starts with the keys it had.
//!
//! One file per provider, `{dir}/{provider}.json`: the JWKS document exactly as fetched, with
//! the provider, issuer and key source it came from and the Unix time it was fetched. Written
//! after every successful fetch, atomically (a temporary file, mode 0600, synced, then renamed
//! over the old one). Read only when a provider's first fetch fails; a file that is unreadable,
//! corrupted, for another provider, issuer or key source, or fetched "in the future" is ignored
//! with a warning. Restored keys are trusted only as long as they would have been had the
//! process kept running: `max_stale` counts from the original fetch.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fetch::MAX_BODY_BYTES;
use super::{KeyStore, LoadError, State, jwks};
use crate::clock::{self, Now};
use crate::config::KeySource;

/// The file format version written and accepted.
const FORMAT: u32 = 1;
/// Largest cache file read: a JWKS at the body limit, escaped as a JSON string, plus fields.
const MAX_FILE_BYTES: u64 = 2 * MAX_BODY_BYTES as u64 + 4096;
/// How far in the future a file's fetch time may be (clocks step) before it is not believed.
const FUTURE_TOLERANCE_SECS: u64 = 60;

/// The directory key sets are kept in.
#[derive(Debug)]
pub struct KeyCache {
    dir: PathBuf,
}

/// Where a key set came from; a file written for another provider or source is foreign.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Provider name.
    pub provider: &'a str,
    /// Its issuer.
    pub issuer: &'a str,
    /// Its key source, e.g. `jwks_uri https://…` or `discovery`.
    pub source: &'a str,
}

/// A key set read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Unix time of the fetch that produced it.
    pub fetched_at: u64,
    /// The JWKS document as fetched.
    pub jwks: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    format: u32,
    provider: String,
    issuer: String,
    source: String,
    fetched_at: u64,
    jwks: String,
}

impl KeyCache {
    /// Opens (creating, mode 0700) the directory.
    pub fn open(dir: &Path) -> io::Result<Arc<Self>> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(Arc::new(Self { dir: dir.to_owned() }))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `provider`.
    pub fn file(&self, provider: &str) -> PathBuf {
        self.dir.join(format!("{provider}.json"))
    }

    /// Writes `jwks`, fetched at `fetched_at` from `origin`, replacing the provider's file at once.
    pub fn save(&self, origin: Origin<'_>, fetched_at: u64, jwks: &[u8]) -> io::Result<()> {
        let jwks = std::str::from_utf8(jwks).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let entry = Entry {
            format: FORMAT,
            provider: origin.provider.to_owned(),
            issuer: origin.issuer.to_owned(),
            source: origin.source.to_owned(),
            fetched_at,
            jwks: jwks.to_owned(),
        };
        let text = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        let target = self.file(origin.provider);
        let aside = self.dir.join(format!(".{}.json.tmp", origin.provider));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&aside)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(&text)?;
        file.sync_all()?;
        fs::rename(&aside, &target)
    }

    /// The provider's key set as last written, if there is a file; `Err` says why a file that
    /// exists cannot be used.
    pub fn load(&self, origin: Origin<'_>, now_unix: u64) -> Result<Option<Restored>, String> {
        let path = self.file(origin.provider);
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read it: {e}")),
        };
        if len > MAX_FILE_BYTES {
            return Err(format!("{len} bytes, over the {MAX_FILE_BYTES}-byte limit"));
        }
        let text = fs::read(&path).map_err(|e| format!("cannot read it: {e}"))?;
        let entry: Entry = serde_json::from_slice(&text).map_err(|e| format!("not a key cache file: {e}"))?;
        if entry.format != FORMAT {
            return Err(format!("format {} (this jwtgate writes {FORMAT})", entry.format));
        }
        for (what, theirs, ours) in [
            ("provider", &entry.provider, origin.provider),
            ("issuer", &entry.issuer, origin.issuer),
            ("key source", &entry.source, origin.source),
        ] {
            if theirs != ours {
                return Err(format!("written for {what} `{theirs}`, not `{ours}`"));
            }
        }
        if entry.fetched_at > now_unix.saturating_add(FUTURE_TOLERANCE_SECS) {
            return Err(format!("fetched at {}, after now ({now_unix})", entry.fetched_at));
        }
        Ok(Some(Restored {
            fetched_at: entry.fetched_at,
            jwks: entry.jwks.into_bytes(),
        }))
    }
}

/// A key store's side of the disk cache: each fetched set saved, one restored after a failed
/// first fetch.
impl KeyStore {
    /// `f` of where this store's key sets come from, as the disk cache records it.
    fn with_origin<R>(&self, f: impl FnOnce(Origin<'_>) -> R) -> R {
        let source = match &self.source {
            KeySource::JwksUri(uri) => format!("jwks_uri {uri}"),
            KeySource::Discovery => "discovery".into(),
            KeySource::JwksFile(path) => format!("jwks_file {}", path.display()),
            KeySource::HmacSecret(_) => "hmac_secret".into(),
            KeySource::None => "none".into(),
        };
        f(Origin {
            provider: &self.provider,
            issuer: &self.issuer,
            source: &source,
        })
    }

    /// Keeps a just-fetched JWKS on disk (off the runtime's threads); a failure is logged and
    /// costs nothing else.
    pub(super) async fn save_to_disk(self: &Arc<Self>, body: Vec<u8>) {
        let Some(disk) = self.disk.clone() else { return };
        let this = self.clone();
        let fetched_at = clock::unix();
        let saved = tokio::task::spawn_blocking(move || {
            this.with_origin(|origin| disk.save(origin, fetched_at, &body))
                .map_err(|e| (disk.file(&this.provider), e))
        })
        .await;
        if let Ok(Err((file, e))) = saved {
            tracing::warn!(provider = %self.provider, file = %file.display(), "cannot keep the key set on disk: {e}");
        }
    }

    /// After a failed first fetch: the key set the disk cache holds, if it is this provider's,
    /// parses, and is younger than `max_stale` counted from its own fetch. Whether it was used.
    pub(super) async fn restore_from_disk(self: &Arc<Self>, why: &Arc<LoadError>) -> bool {
        let Some(disk) = self.disk.clone() else { return false };
        let this = self.clone();
        let now = clock::now();
        let read = tokio::task::spawn_blocking(move || {
            let read = this.with_origin(|origin| disk.load(origin, now.unix));
            (disk.file(&this.provider), read)
        })
        .await;
        let Ok((file, read)) = read else { return false };
        let ignore = |reason: String| {
            tracing::warn!(provider = %self.provider, file = %file.display(), reason = %reason, "ignoring the key cache file");
            false
        };
        let restored = match read {
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(reason) => return ignore(reason),
        };
        let age = Duration::from_secs(now.unix.saturating_sub(restored.fetched_at));
        let Some(left) = self.settings.max_stale.checked_sub(age) else {
            return ignore(format!(
                "fetched {}s ago, older than max_stale ({}s)",
                age.as_secs(),
                self.settings.max_stale.as_secs()
            ));
        };
        let parsed = match jwks::parse(&restored.jwks) {
            Ok(p) => p,
            Err(e) => return ignore(format!("not a usable JWKS: {e}")),
        };
        tracing::warn!(
            provider = %self.provider,
            keys = parsed.set.len(),
            age_seconds = age.as_secs(),
            "issuer unreachable: serving the key set kept on disk until a fetch succeeds"
        );
        self.state.store(Arc::new(State {
            keys: Some(Arc::new(parsed.set)),
            loaded_at: Some(Now {
                unix: restored.fetched_at,
                instant: now.instant,
            }),
            usable_until: now.instant.checked_add(left),
            restored: true,
            last_error: Some(why.clone()),
        }));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin<'static> = Origin {
        provider: "corp",
        issuer: "https://idp/",
        source: "jwks_uri https://idp/keys",
    };

    #[test]
    fn a_saved_key_set_reads_back_and_only_its_owner_may_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::open(&dir.path().join("keys")).unwrap();
        assert_eq!(cache.load(ORIGIN, 1000), Ok(None), "nothing written yet");
        cache.save(ORIGIN, 900, br#"{"keys":[]}"#).unwrap();
        let restored = cache.load(ORIGIN, 1000).unwrap().unwrap();
        assert_eq!(restored.fetched_at, 900);
        assert_eq!(restored.jwks, br#"{"keys":[]}"#);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache.file("corp")), 0o600);
        assert_eq!(mode(cache.dir()), 0o700);
        // Rewritten in place: no temporary file left behind.
        cache.save(ORIGIN, 950, br#"{"keys":[1]}"#).unwrap();
        assert_eq!(fs::read_dir(cache.dir()).unwrap().count(), 1);
        assert_eq!(cache.load(ORIGIN, 1000).unwrap().unwrap().fetched_at, 950);
    }

    #[test]
    fn foreign_corrupted_and_future_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::open(dir.path()).unwrap();
        cache.save(ORIGIN, 900, br#"{"keys":[]}"#).unwrap();
        let other_issuer = Origin {
            issuer: "https://elsewhere/",
            ..ORIGIN
        };
        assert!(cache.load(other_issuer, 1000).unwrap_err().contains("issuer"));
        let other_source = Origin {
            source: "discovery",
            ..ORIGIN
        };
        assert!(cache.load(other_source, 1000).unwrap_err().contains("key source"));
        assert!(cache.load(ORIGIN, 800).unwrap_err().contains("after now"));
        fs::write(cache.file("corp"), "{\"format\":1,").unwrap();
        assert!(cache.load(ORIGIN, 1000).unwrap_err().contains("not a key cache file"));
        fs::write(cache.file("corp"), vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(cache.load(ORIGIN, 1000).unwrap_err().contains("limit"));
    }
}
