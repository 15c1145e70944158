//! Holdout runs data challenges on data that may not leave its host.
//!
//! Participants submit code, not predictions. Holdout runs that code in a locked-down
//! container next to the private data, scores what it writes against labels the code never
//! sees, and releases only aggregate scores. A platform drives it over gRPC.
//!
//! ```text
//!  cli / app ─▶ api (thin: auth, wire conversion, error → status)
//!                 │
//!                 ▼
//!  services: challenges · submissions · leaderboard · audit ── release (what a caller sees)
//!                 │                                   ▲
//!                 ▼                                   │ committed, then published
//!  scheduler ─▶ queue (fairness, live runs)            │
//!      │                                              │
//!      ▼                                              │
//!  run ─▶ plan · workdir · builtin | custom · logs ─▶ store (SQLite | PostgreSQL; the feed)
//!      │
//!      └─▶ sandbox (Docker via bollard) · verdict · scoring · archive
//!  domain (challenges, submissions as a state machine, limits, ids) underlies all of them
//! ```
//!
//! - [`config`]: typed, validated server config (file + env), defaults and caps.
//! - [`app`]: wires the parts, binds, recovers, serves, shuts down gracefully; the
//!   execution worker process (`holdout worker`).
//! - [`api`]: tonic services (thin), auth interceptor, every wire conversion, errors → status.
//! - [`auth`]: bearer tokens and roles.
//! - [`domain`]: challenges, limits, ids as newtypes, and the submission's state machine.
//! - [`challenges`]: create, read, update, close; validation of a definition against the host;
//!   the closer, which closes each challenge at its `closes_at`.
//! - [`submissions`]: submit (upload and admission), read, list, watch, cancel, logs, and
//!   participants' final selections.
//! - [`leaderboard`]: boards and the ladders; what a scored FULL run releases; the private
//!   ranking by final selection.
//! - [`release`]: what a caller may see of a submission, by role (domain views).
//! - [`audit`]: the record of every value released to a submitter token, and the ledger.
//! - [`leakage`]: how many bits one FULL submission can release, at most.
//! - [`scheduler`]: recovery after a start, the loop that starts runs, shutdown hand-back;
//!   as one worker of a shared store: claims, leases, sweeps, data checks.
//! - [`queue`]: fairness across participants and the registry of live runs.
//! - [`run`]: one submission from QUEUED to its verdict: plan, work folder, sandbox,
//!   built-in or custom scoring, logs; and the same pipeline for a local SMOKE run
//!   (`holdout run-local`).
//! - [`images`]: derived runtime images built offline from approved wheels, verified by a
//!   locked-down run (`holdout image extend`).
//! - [`verdict`]: the one classifier of run outcomes and the participant-safe messages.
//! - [`sandbox`]: the container backend and every hardening flag.
//! - [`scoring`]: predictions parsing, metrics, the public/private split.
//! - [`archive`]: safe extraction of submitted archives.
//! - [`store`]: persistence behind one interface, two engines (SQLite, PostgreSQL), their
//!   migrations, the feed of committed changes, and the coordination of workers.
//! - [`datadir`]: the digest of a challenge's data folder (the same data on every host).
//! - [`losses`]: per-row public losses for the parameter-free ladder (never released).
//! - [`paths`]: every file the service keeps under `state_dir`.
//! - [`backup`]: online backup of a state folder, and its restore.
//! - [`janitor`]: retention of archives and logs, and the disk the service keeps.
//! - [`telemetry`]: Prometheus counters, gauges and histograms.
//! - [`paging`]: page sizes and tokens of list RPCs.
//! - [`units`]: byte sizes and durations in config and challenge files.
//! - [`cli`]: the `holdout` command line.
//! - [`testing`]: throw-away PostgreSQL clusters for tests (not used by the service).
//! - [`prepare`]: the preparation check of a challenge's data, pseudonymisation, data cards.

pub mod api;
pub mod app;
pub mod archive;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod challenges;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod domain;
pub mod images;
pub mod janitor;
pub mod leaderboard;
pub mod leakage;
pub mod losses;
pub mod paging;
pub mod paths;
pub mod prepare;
pub mod queue;
pub mod release;
pub mod run;
pub mod sandbox;
pub mod scheduler;
pub mod scoring;
pub mod store;
pub mod submissions;
pub mod telemetry;
pub mod testing;
pub mod units;
pub mod verdict;

/// Code generated from `proto/holdout/v1/holdout.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("holdout.v1");
    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("holdout_descriptor");
}
