//! Schema migrations, applied in order at start; `PRAGMA user_version` records how far.
//!
//! Never edit a released migration: add a new one.

use rusqlite::Connection;

use crate::store::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: challenges and submissions.
    "CREATE TABLE challenges (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE submissions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        challenge_id TEXT NOT NULL REFERENCES challenges(id),
        participant_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        verdict TEXT NOT NULL,
        message TEXT NOT NULL,
        detail TEXT NOT NULL,
        public_scores TEXT NOT NULL,
        private_scores TEXT NOT NULL,
        archive_sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        usage TEXT,
        attempts INTEGER NOT NULL,
        idempotency_key TEXT,
        charged INTEGER NOT NULL,
        UNIQUE (owner, idempotency_key)
     );
     CREATE INDEX submissions_by_state ON submissions(state, seq);
     CREATE INDEX submissions_by_challenge ON submissions(challenge_id, participant_id, seq);",
    // 2: the audit of everything released to submitter tokens.
    "CREATE TABLE releases (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        token_name TEXT NOT NULL,
        challenge_id TEXT NOT NULL,
        submission_id TEXT NOT NULL,
        what TEXT NOT NULL,
        vals TEXT NOT NULL
     );
     CREATE INDEX releases_by_challenge ON releases(challenge_id, seq);",
    // 3: the leakage ledger (one row per FULL result released), and an explicit failure
    // detail on challenges stored before it existed: they keep showing exact verdicts.
    "CREATE TABLE leakage (
        submission_id TEXT PRIMARY KEY,
        challenge_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        participant_id TEXT NOT NULL,
        bits REAL NOT NULL,
        at INTEGER NOT NULL
     );
     CREATE INDEX leakage_by_challenge ON leakage(challenge_id, owner, participant_id);
     UPDATE challenges SET body = json_set(body, '$.release.failure_detail', 'verdict')
      WHERE json_extract(body, '$.release.failure_detail') IS NULL;",
    // 4: repair runs an earlier version scored with a non-finite metric (stored as null):
    // they were never valid scores, so they end as the invalid predictions they were.
    "UPDATE submissions
        SET state = 'failed', verdict = 'invalid_predictions',
            message = 'the metric cannot be computed from these predictions',
            detail = 'repaired: a non-finite score was stored by an earlier version',
            public_scores = '{}', private_scores = '{}'
      WHERE state = 'succeeded'
        AND (EXISTS (SELECT 1 FROM json_each(public_scores) WHERE type = 'null')
          OR EXISTS (SELECT 1 FROM json_each(private_scores) WHERE type = 'null'));",
    // 5: retention: when a terminal submission's archive and logs were deleted (its row,
    // with the archive's hash, stays).
    "ALTER TABLE submissions ADD COLUMN expired_at INTEGER;
     CREATE INDEX submissions_by_finish ON submissions(finished_at) WHERE expired_at IS NULL;",
    // 6: final selections: the scored FULL submissions each participant (of a platform)
    // chose for the private ranking.
    "CREATE TABLE final_selections (
        challenge_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        participant_id TEXT NOT NULL,
        submission_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (challenge_id, owner, participant_id, submission_id)
     );",
];

/// Brings the schema up to date.
pub fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}
