//! Holdout runs data challenges on data that may not leave its host.
//!
//! Participants submit code, not predictions. Holdout runs that code in a locked-down
//! container next to the private data, scores what it writes against labels the code never
//! sees, and releases only aggregate scores. A platform drives it over gRPC.
//!
//! ```text
//!  gRPC ─► api (thin, auth) ─► challenges / submissions / leaderboard ─► store (SQLite)
//!                                      │                    ▲
//!                                      ▼                    │ state changes, committed
//!                                    queue ─► runner ─► sandbox (Docker via bollard)
//!                                                  └──► scoring ──► release (what leaves)
//! ```
//!
//! - [`config`]: typed, validated server config (file + env), defaults and caps.
//! - [`app`]: wires the parts, binds, serves, shuts down gracefully.
//! - [`api`]: tonic services, auth interceptor, wire conversion, the error → status map.
//! - [`domain`]: challenges, submissions, limits, verdicts, ids as newtypes.
//! - [`challenges`], [`submissions`], [`leaderboard`]: what each RPC does.
//! - [`queue`]: the durable, fair queue; cancellation; crash recovery.
//! - [`runner`]: one submission from archive to verdict.
//! - [`scorer`]: organisers' own scorers, run in the same sandbox.
//! - [`sandbox`]: the container backend and every hardening flag.
//! - [`verdict`]: the one classifier of run outcomes.
//! - [`archive`]: safe extraction of submitted archives.
//! - [`scoring`]: predictions parsing, metrics, the public/private split.
//! - [`release`]: what a caller may see of a submission.
//! - [`audit`]: the record of every value released to a submitter token.
//! - [`store`]: SQLite persistence and migrations.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`paging`]: page sizes and tokens of list RPCs.
//! - [`prepare`]: the preparation check of a challenge's data, pseudonymisation, data cards.

pub mod api;
pub mod app;
pub mod archive;
pub mod audit;
pub mod auth;
pub mod challenges;
pub mod cli;
pub mod config;
pub mod core;
pub mod domain;
pub mod leaderboard;
pub mod losses;
pub mod metrics;
pub mod paging;
pub mod prepare;
pub mod queue;
pub mod release;
pub mod runner;
pub mod sandbox;
pub mod scorer;
pub mod scoring;
pub mod store;
pub mod submissions;
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
