//! The files the PostgreSQL engine keeps as rows: archives (8 MiB chunks, fetched once per
//! host into its state folder and checked against their SHA-256) and small files (logs,
//! per-row losses).

use std::path::Path;

use deadpool_postgres::Object;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::ADMISSION_LOCK;
use crate::domain::{SubmissionId, UnixMillis};
use crate::paths::Paths;
use crate::store::{BlobKind, StoreError, codec, readable};

/// Reads the bytes of a stored archive into `dest` (through a temporary file beside it,
/// checked against `sha256` before it is renamed into place).
pub(super) async fn fetch_archive(
    client: &Object,
    sha256: &str,
    dest: &Path,
) -> Result<(), StoreError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(StoreError::Io)?;
    let count: Option<i64> = client
        .query_opt(
            "SELECT (SELECT count(*) FROM archive_chunks WHERE sha256 = $1) FROM archives WHERE sha256 = $1",
            &[&sha256],
        )
        .await?
        .map(|r| r.get(0));
    let Some(count) = count else {
        return Err(StoreError::Corrupt(format!(
            "archive {sha256} is not stored"
        )));
    };
    let temp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempfile_in(dir)
        .map_err(StoreError::Io)?
        .into_temp_path();
    let mut file = tokio::fs::File::create(&temp)
        .await
        .map_err(StoreError::Io)?;
    let mut hash = Sha256::new();
    // One chunk in memory at a time.
    for n in 0..count as i32 {
        let row = client
            .query_one(
                "SELECT data FROM archive_chunks WHERE sha256 = $1 AND n = $2",
                &[&sha256, &n],
            )
            .await?;
        let data: &[u8] = row.get(0);
        hash.update(data);
        file.write_all(data).await.map_err(StoreError::Io)?;
    }
    file.sync_all().await.map_err(StoreError::Io)?;
    drop(file);
    if hex::encode(hash.finalize()) != sha256 {
        return Err(StoreError::Corrupt(format!(
            "archive {sha256}: the stored bytes do not hash to it"
        )));
    }
    temp.persist(dest).map_err(|e| StoreError::Io(e.error))
}

/// Stores a small file of `kind` under `name`, replacing one of that name.
pub(super) async fn put_blob(
    client: &Object,
    kind: BlobKind,
    name: String,
    data: Vec<u8>,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO blobs (kind, name, data) VALUES ($1, $2, $3)
             ON CONFLICT (kind, name) DO UPDATE SET data = EXCLUDED.data",
            &[&kind.as_str(), &name, &data],
        )
        .await?;
    Ok(())
}

/// A small file, if stored.
pub(super) async fn get_blob(
    client: &Object,
    kind: BlobKind,
    name: String,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = client
        .query_opt(
            "SELECT data FROM blobs WHERE kind = $1 AND name = $2",
            &[&kind.as_str(), &name],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Deletes every small file of `kind` whose name starts with `prefix`.
pub(super) async fn delete_blobs(
    client: &Object,
    kind: BlobKind,
    prefix: String,
) -> Result<(), StoreError> {
    client
        .execute(
            "DELETE FROM blobs WHERE kind = $1 AND starts_with(name, $2)",
            &[&kind.as_str(), &prefix],
        )
        .await?;
    Ok(())
}

/// Retention: marks the terminal submissions that ended before `cutoff` expired at `now`,
/// and deletes each of their archives no unexpired submission uses (rows, and this host's
/// cached copy), under the admission lock so no upload of the same archive races it.
pub(super) async fn expire_before(
    client: &mut Object,
    paths: &Paths,
    cutoff: UnixMillis,
    now: UnixMillis,
) -> Result<Vec<SubmissionId>, StoreError> {
    let tx = client.transaction().await?;
    // Under the admission lock: no upload of the same archive races its deletion.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADMISSION_LOCK])
        .await?;
    let due = tx
        .query(
            "UPDATE submissions SET expired_at = $2
             WHERE expired_at IS NULL AND finished_at IS NOT NULL AND finished_at < $1
               AND state IN ('succeeded', 'failed', 'cancelled')
             RETURNING id, archive_sha256",
            &[&cutoff, &now],
        )
        .await?;
    let mut shas: Vec<String> = due.iter().map(|r| r.get::<_, String>(1)).collect();
    shas.sort();
    shas.dedup();
    let mut gone = Vec::new();
    for sha in &shas {
        let n = tx
            .execute(
                "DELETE FROM archives WHERE sha256 = $1
                   AND NOT EXISTS (SELECT 1 FROM submissions WHERE archive_sha256 = $1 AND expired_at IS NULL)",
                &[sha],
            )
            .await?;
        if n == 1 {
            gone.push(sha.clone());
        }
    }
    tx.commit().await?;
    for sha in gone {
        // This host's cached copy; other hosts' caches are pruned by their own janitor.
        if let Err(e) = tokio::fs::remove_file(paths.archive(&sha)).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(StoreError::Io(e));
        }
    }
    Ok(readable(
        due.iter().map(|r| codec::submission_id(r.get(0))).collect(),
    ))
}
