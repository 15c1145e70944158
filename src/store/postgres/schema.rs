//! The PostgreSQL schema, versioned on its own (table `schema_version`) and applied at
//! connect under an advisory lock, so replicas and workers starting together apply each
//! migration once. DDL is transactional here: a migration applies whole or not at all.
//!
//! Never edit a released migration: add a new one.

use deadpool_postgres::Object;

use crate::store::StoreError;

/// Advisory lock key serialising migrations ("holdout" + 1).
const MIGRATION_LOCK: i64 = 0x686f_6c64_6f75_7401;

const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite schema holds after its migration 5, plus what workers
    // coordinate through (leases, held slots, fairness, partition phases, the registry),
    // archives and small files as rows, and a notification per committed change.
    r#"
    CREATE FUNCTION holdout_now_ms() RETURNS bigint LANGUAGE sql VOLATILE AS
        $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

    CREATE TABLE challenges (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );

    CREATE TABLE submissions (
        seq BIGSERIAL PRIMARY KEY,
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
        created_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        usage TEXT,
        attempts BIGINT NOT NULL,
        idempotency_key TEXT,
        charged BOOLEAN NOT NULL,
        expired_at BIGINT,
        worker_id TEXT,
        host_id TEXT,
        lease_until BIGINT,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        slot_until BIGINT,
        UNIQUE (owner, idempotency_key)
    );
    CREATE INDEX submissions_by_state ON submissions(state, seq);
    CREATE INDEX submissions_by_challenge ON submissions(challenge_id, participant_id, seq);
    CREATE INDEX submissions_by_finish ON submissions(finished_at) WHERE expired_at IS NULL;
    CREATE INDEX submissions_by_worker ON submissions(worker_id) WHERE lease_until IS NOT NULL;
    CREATE INDEX submissions_holding_slots ON submissions(slot_until) WHERE slot_until IS NOT NULL;

    CREATE TABLE releases (
        seq BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        token_name TEXT NOT NULL,
        challenge_id TEXT NOT NULL,
        submission_id TEXT NOT NULL,
        what TEXT NOT NULL,
        vals TEXT NOT NULL
    );
    CREATE INDEX releases_by_challenge ON releases(challenge_id, seq);

    CREATE TABLE leakage (
        submission_id TEXT PRIMARY KEY,
        challenge_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        participant_id TEXT NOT NULL,
        bits DOUBLE PRECISION NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX leakage_by_challenge ON leakage(challenge_id, owner, participant_id);

    CREATE TABLE archives (
        sha256 TEXT PRIMARY KEY,
        bytes BIGINT NOT NULL,
        stored_at BIGINT NOT NULL
    );
    CREATE TABLE archive_chunks (
        sha256 TEXT NOT NULL REFERENCES archives(sha256) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (sha256, n)
    );

    CREATE TABLE blobs (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (kind, name)
    );

    CREATE TABLE parties (
        owner TEXT NOT NULL,
        participant_id TEXT NOT NULL,
        last_start BIGINT NOT NULL,
        PRIMARY KEY (owner, participant_id)
    );
    CREATE SEQUENCE party_ticks;

    CREATE TABLE host_phases (
        host_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        began BIGINT NOT NULL
    );

    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        host_id TEXT NOT NULL,
        slots INTEGER NOT NULL,
        live INTEGER NOT NULL,
        started_at BIGINT NOT NULL,
        last_beat BIGINT NOT NULL,
        state TEXT NOT NULL,
        refused TEXT NOT NULL,
        version TEXT NOT NULL
    );

    -- Every committed change of a submission, to every replica: the row itself when it fits
    -- a notification (8,000 bytes), else its id (the listener reads it).
    CREATE FUNCTION holdout_notify_submission() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE payload TEXT;
    BEGIN
        payload := row_to_json(NEW)::text;
        IF octet_length(payload) > 7900 THEN
            payload := json_build_object('id', NEW.id)::text;
        END IF;
        PERFORM pg_notify('holdout_submissions', payload);
        RETURN NULL;
    END $$;
    CREATE TRIGGER submissions_notify
        AFTER INSERT OR UPDATE OF state, verdict, message, detail, public_scores, private_scores,
            started_at, finished_at, usage, attempts, charged
        ON submissions FOR EACH ROW EXECUTE FUNCTION holdout_notify_submission();
    "#,
    // 2: final selections (SQLite's migration 6).
    r#"
    CREATE TABLE final_selections (
        challenge_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        participant_id TEXT NOT NULL,
        submission_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (challenge_id, owner, participant_id, submission_id)
    );
    "#,
];

/// Brings the schema up to date.
pub(super) async fn apply(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .await?;
    let current: i32 = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0);
    let current = current as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).await?;
        tracing::info!(
            version = i + 1,
            engine = "postgres",
            "applied schema migration"
        );
    }
    let version = MIGRATIONS.len() as i32;
    tx.execute("DELETE FROM schema_version", &[]).await?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&version],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
