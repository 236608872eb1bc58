//! The default store: one redb file on local disk, so a restart never resurrects a revoked token.
//! Writes are durable before the admin API answers. One process at a time may open the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Revocation, StoreError};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("revocations");

/// File name inside the configured directory.
pub const FILE_NAME: &str = "revocations.redb";

/// A redb database of revocations keyed by [`Revocation::key`].
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (creating if needed) `dir/revocations.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(source) => return Err(StoreError::Open { path, source }),
        };
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(TABLE).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Self { db: Arc::new(db), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every stored revocation; unreadable entries are logged and skipped.
    pub fn load(&self) -> Result<Vec<Revocation>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(TABLE).map_err(redb::Error::from)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(redb::Error::from)? {
            let (k, v) = entry.map_err(redb::Error::from)?;
            match serde_json::from_slice::<Revocation>(v.value()) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(key = k.value(), "skipping an unreadable revocation: {e}"),
            }
        }
        Ok(out)
    }

    /// Writes durably (off the async threads), unless a stronger entry for the same token or
    /// subject is already stored.
    pub async fn put(&self, r: &Revocation) -> Result<(), StoreError> {
        let db = self.db.clone();
        let key = r.key();
        let value = serde_json::to_vec(r)?;
        let new = r.clone();
        let written = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(TABLE)?;
                let keep_old = table
                    .get(key.as_str())?
                    .and_then(|old| serde_json::from_slice::<Revocation>(old.value()).ok())
                    .is_some_and(|old| !new.stronger_than(&old));
                if !keep_old {
                    table.insert(key.as_str(), value.as_slice())?;
                }
            }
            Ok(txn.commit()?)
        })
        .await?;
        Ok(written?)
    }

    /// Deletes entries expired at `now`; returns how many.
    pub async fn purge(&self, now: u64) -> Result<usize, StoreError> {
        let db = self.db.clone();
        let purged = tokio::task::spawn_blocking(move || -> Result<usize, redb::Error> {
            let txn = db.begin_write()?;
            let purged = {
                let mut table = txn.open_table(TABLE)?;
                table
                    .extract_if(|_, v| serde_json::from_slice::<Revocation>(v).is_ok_and(|r| r.expired(now)))?
                    .count()
            };
            txn.commit()?;
            Ok(purged)
        })
        .await?;
        Ok(purged?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Target;

    fn token(jti: &str, exp: u64) -> Revocation {
        Revocation {
            target: Target::Token {
                issuer: "i".into(),
                jti: jti.into(),
            },
            expires_at: exp,
            created_at: 1,
            reason: "logout".into(),
        }
    }

    #[tokio::test]
    async fn survives_reopening_and_purges() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.put(&token("a", 10)).await.unwrap();
            s.put(&token("b", 100)).await.unwrap();
            s.put(&token("b", 200)).await.unwrap();
            s.put(&token("b", 150)).await.unwrap(); // weaker: the stored 200 stays
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let mut all = s.load().unwrap();
        all.sort_by_key(|r| r.expires_at);
        assert_eq!(all, vec![token("a", 10), token("b", 200)]);
        assert_eq!(s.purge(50).await.unwrap(), 1);
        assert_eq!(s.load().unwrap(), vec![token("b", 200)]);
    }

    #[test]
    fn one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path()).unwrap();
        assert!(EmbeddedStore::open(dir.path()).is_err());
    }
}
