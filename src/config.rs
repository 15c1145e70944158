//! The server's configuration: a TOML file, overridden key by key by `HOLDOUT_<KEY>`
//! environment variables, then by command-line flags; validated once, here.
//!
//! The environment is passed in rather than read, so tests can set it. Unknown keys are
//! rejected with a message naming them: a typo in a limit must never silently fall back to
//! a default.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Isolation;
use crate::domain::Limits;
pub use crate::sandbox::output_fs::OutputMode;
pub use crate::store::DatabaseUrl;
use crate::units::{ByteSize, HumanDuration};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Data owners: define challenges, see everything.
    Admin,
    /// Platforms acting for participants.
    Submitter,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Submitter => "submitter",
        }
    }
}

/// One accepted bearer token, stored only as its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it; submissions are owned by this name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

/// Where a `holdout serve` runs submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    /// In this process, on this host's Docker Engine (with PostgreSQL, as one worker among
    /// any `holdout worker`s).
    #[default]
    Local,
    /// Nowhere: this process serves the API only; `holdout worker`s run submissions (needs
    /// PostgreSQL).
    Workers,
}

/// The whole server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Challenge data folders live under here.
    pub data_root: PathBuf,
    /// Database, stored archives, logs, work folders.
    pub state_dir: PathBuf,
    /// Prometheus metrics address (`GET /metrics`); empty = off.
    pub metrics_listen: String,
    /// Docker endpoint; empty = the local engine's default socket.
    pub docker_host: String,
    /// Isolation for challenges that do not choose.
    pub default_isolation: Isolation,
    /// Runs at once, all challenges together.
    pub concurrency: u32,
    /// Most submissions waiting in QUEUED at once; Submit is RESOURCE_EXHAUSTED beyond.
    pub max_queued: u32,
    /// Runs of a submission before a crash mid-run fails it as INTERNAL_ERROR.
    pub max_attempts: u32,
    /// On shutdown, how long running runs may finish before they are handed back to the queue.
    pub shutdown_grace: HumanDuration,
    /// Time-partition the host: SMOKE runs (whose logs are released) and FULL runs (which
    /// read private data) never run at the same time, so no shared-host signal (CPU
    /// contention, memory pressure, host-wide counters) can carry private data from one to
    /// the other. Off only for a host that runs no SMOKE runs, or trusts its participants.
    pub time_partition: bool,
    /// Under time partitioning, how long one kind of run may keep starting while the other
    /// kind waits; then the host drains and switches, so neither kind starves.
    pub partition_slice: HumanDuration,
    /// Uploads one token may have in progress at once; more are RESOURCE_EXHAUSTED before
    /// their body is read.
    pub max_uploads_per_token: u32,
    /// An upload that sends nothing for this long is abandoned (and its file deleted).
    pub upload_idle_timeout: HumanDuration,
    /// Archives and logs of terminal submissions are deleted this long after they ended
    /// (their rows, with the archive's hash, stay); 0 keeps them forever.
    pub retention: HumanDuration,
    /// How a run's `/output` is capped: `loop`, a filesystem of the cap's size per run (needs
    /// root and loop devices), or `directory`, a folder watched by a walker (weaker: for hosts
    /// without loop devices only).
    pub output_filesystem: OutputMode,
    /// Limits used where a challenge says 0.
    pub defaults: Limits,
    /// The most any challenge may ask for.
    pub caps: Limits,
    /// Accepted tokens.
    pub tokens: Vec<TokenConfig>,
    /// The database: empty or `sqlite:` for the file under `state_dir` (one process), or
    /// `postgres://user@host:port/db` shared by API replicas and execution workers.
    pub database_url: String,
    /// Where `holdout serve` runs submissions: `local` or `workers` (API only).
    pub execution: Execution,
    /// With PostgreSQL: this worker's name among the workers (default: the instance label
    /// derived from `state_dir`). Must be unique.
    pub worker_name: String,
    /// With PostgreSQL: the Docker host's id, shared by workers on one engine (default: the
    /// engine's own id).
    pub host_id: String,
    /// With PostgreSQL: how long a worker's claim on a run holds without a renewal; a dead
    /// worker's runs go back to the queue this long after its last renewal.
    pub lease_ttl: HumanDuration,
    /// With PostgreSQL: runs at once on all workers together (0 = each worker's
    /// `concurrency` is the only limit).
    pub global_concurrency: u32,
    /// A pause between two items of a maintenance job (a rescoring reads and scores one
    /// kept prediction per item): throttles a large job on a busy host. 0 = none.
    pub job_item_pause: HumanDuration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".parse().expect("static address"),
            data_root: PathBuf::from("/srv/holdout/data"),
            state_dir: PathBuf::from("/var/lib/holdout"),
            metrics_listen: String::new(),
            docker_host: String::new(),
            default_isolation: Isolation::Runc,
            concurrency: 2,
            max_queued: 10_000,
            max_attempts: 3,
            shutdown_grace: HumanDuration(Duration::from_secs(30)),
            time_partition: true,
            partition_slice: HumanDuration(Duration::from_secs(60)),
            output_filesystem: OutputMode::Loop,
            max_uploads_per_token: 16,
            upload_idle_timeout: HumanDuration(Duration::from_secs(30)),
            retention: HumanDuration(Duration::from_secs(90 * 86_400)),
            defaults: default_limits(),
            caps: default_caps(),
            tokens: Vec::new(),
            database_url: String::new(),
            execution: Execution::Local,
            worker_name: String::new(),
            host_id: String::new(),
            lease_ttl: HumanDuration(Duration::from_secs(30)),
            global_concurrency: 0,
            job_item_pause: HumanDuration(Duration::ZERO),
        }
    }
}

/// Limits a challenge gets where it says 0.
pub fn default_limits() -> Limits {
    Limits {
        wall_time: HumanDuration(Duration::from_secs(300)),
        memory_bytes: ByteSize(1 << 30),
        cpu_millis: 1000,
        pids: 128,
        output_bytes: ByteSize(64 << 20),
        scratch_bytes: ByteSize(64 << 20),
        gpus: 0,
        archive_bytes: ByteSize(50 << 20),
        extracted_bytes: ByteSize(200 << 20),
        log_bytes: ByteSize(1 << 20),
        concurrency: 2,
    }
}

/// The most a challenge may ask for unless the admin raises it.
pub fn default_caps() -> Limits {
    Limits {
        wall_time: HumanDuration(Duration::from_secs(4 * 3600)),
        memory_bytes: ByteSize(16 << 30),
        cpu_millis: 8000,
        pids: 4096,
        output_bytes: ByteSize(4 << 30),
        scratch_bytes: ByteSize(4 << 30),
        gpus: 8,
        archive_bytes: ByteSize(1 << 30),
        extracted_bytes: ByteSize(4 << 30),
        log_bytes: ByteSize(64 << 20),
        concurrency: 64,
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid.
    #[error("invalid config{}: {reason}", .path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when the problem is in it.
        path: Option<PathBuf>,
        /// What is wrong, naming the key.
        reason: String,
    },
}

/// Overrides from the command line; `None` keeps the file's or environment's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-root`.
    pub data_root: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
}

/// Top-level keys that `HOLDOUT_<KEY>` may override.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_root",
    "state_dir",
    "docker_host",
    "metrics_listen",
    "default_isolation",
    "concurrency",
    "max_queued",
    "max_attempts",
    "shutdown_grace",
    "time_partition",
    "partition_slice",
    "output_filesystem",
    "max_uploads_per_token",
    "upload_idle_timeout",
    "retention",
    "database_url",
    "execution",
    "worker_name",
    "host_id",
    "lease_ttl",
    "global_concurrency",
    "job_item_pause",
];

impl Config {
    /// Loads the file (if any), applies `HOLDOUT_<KEY>` from `env`, then `overrides`, and
    /// validates the result.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid {
                        path: Some(path.to_owned()),
                        reason: e.message().to_owned(),
                    })?
            }
            None => toml::Table::new(),
        };
        for key in ENV_KEYS {
            let var = format!("HOLDOUT_{}", key.to_ascii_uppercase());
            if let Some(value) = env.get(&var) {
                let parsed = match *key {
                    "time_partition" => match value.trim() {
                        "true" | "1" => toml::Value::Boolean(true),
                        "false" | "0" => toml::Value::Boolean(false),
                        _ => {
                            return Err(ConfigError::Invalid {
                                path: None,
                                reason: format!("{var}={value:?} is not true or false"),
                            });
                        }
                    },
                    "concurrency"
                    | "max_queued"
                    | "max_attempts"
                    | "max_uploads_per_token"
                    | "global_concurrency" => value
                        .trim()
                        .parse::<i64>()
                        .map(toml::Value::Integer)
                        .map_err(|_| ConfigError::Invalid {
                            path: None,
                            reason: format!("{var}={value:?} is not a whole number"),
                        })?,
                    _ => toml::Value::String(value.clone()),
                };
                table.insert((*key).to_owned(), parsed);
            }
        }
        let mut config: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
                path: file.map(Path::to_owned),
                reason: e.to_string().trim().to_owned(),
            })?;
        // Limits tables are partial: fields left out keep the built-in defaults and caps.
        config.defaults = config.defaults.or_defaults(&default_limits());
        config.caps = config.caps.or_defaults(&default_caps());
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(dir) = &overrides.data_root {
            config.data_root = dir.clone();
        }
        if let Some(dir) = &overrides.state_dir {
            config.state_dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid { path: None, reason };
        if self.concurrency == 0 {
            return Err(invalid("concurrency must be at least 1".into()));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts must be at least 1".into()));
        }
        if self.max_uploads_per_token == 0 {
            return Err(invalid("max_uploads_per_token must be at least 1".into()));
        }
        if self.upload_idle_timeout.0.is_zero() {
            return Err(invalid("upload_idle_timeout must be positive".into()));
        }
        let over = self.defaults.over_caps(&self.caps);
        if !over.is_empty() {
            return Err(invalid(format!(
                "defaults exceed caps: {}",
                over.join("; ").replace("limits.", "defaults.")
            )));
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(format!(
                "metrics_listen {:?} is not an address like 127.0.0.1:9100",
                self.metrics_listen
            )));
        }
        let database = self.database().map_err(invalid)?;
        if self.execution == Execution::Workers && database == DatabaseUrl::Sqlite {
            return Err(invalid(
                "execution = \"workers\" needs a shared database: set database_url = \"postgres://...\"".into(),
            ));
        }
        if self.lease_ttl.0 < Duration::from_secs(1) {
            return Err(invalid("lease_ttl must be at least 1s".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.name.is_empty() {
                return Err(invalid(format!("tokens[{i}].name is empty")));
            }
            if crate::domain::is_rerun_owner(&t.name) {
                return Err(invalid(format!(
                    "tokens[{i}].name {:?} must not start with \"{}\" (the owner of re-runs)",
                    t.name,
                    crate::domain::RERUN_OWNER_PREFIX
                )));
            }
            if !names.insert(&t.name) {
                return Err(invalid(format!(
                    "tokens[{i}].name {:?} is used twice",
                    t.name
                )));
            }
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "tokens[{i}].sha256 must be the 64 hex digits of the token's SHA-256 (see `holdout token new`)"
                )));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The database `database_url` names.
    pub fn database(&self) -> Result<DatabaseUrl, String> {
        DatabaseUrl::parse(&self.database_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("holdout.example.toml");
        let c = Config::load(Some(&path), &HashMap::new(), &Overrides::default()).unwrap();
        assert_eq!(c.database().unwrap(), DatabaseUrl::Sqlite);
        assert_eq!(c.execution, Execution::Local);
    }

    #[test]
    fn workers_need_postgres_and_a_database_url_is_checked() {
        let err = load_str("execution = \"workers\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database_url"), "{err}");
        let err = load_str("database_url = \"mysql://x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database_url"), "{err}");
        let c = load_str(
            "execution = \"workers\"\n",
            &[("HOLDOUT_DATABASE_URL", "postgres://u@h/db")],
        )
        .unwrap();
        assert_eq!(
            c.database().unwrap(),
            DatabaseUrl::Postgres("postgres://u@h/db".into())
        );
    }

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holdout.toml");
        std::fs::write(&path, text).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(Some(&path), &env, &Overrides::default())
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = load_str("concurency = 3\n", &[]).unwrap_err().to_string();
        assert!(err.contains("concurency"), "{err}");
        let err = load_str("[defaults]\nmemory = \"1GiB\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load_str(
            "concurrency = 3\nstate_dir = \"/a\"\n",
            &[("HOLDOUT_CONCURRENCY", "5"), ("HOLDOUT_STATE_DIR", "/b")],
        )
        .unwrap();
        assert_eq!(c.concurrency, 5);
        assert_eq!(c.state_dir, PathBuf::from("/b"));
    }

    #[test]
    fn partial_limit_tables_keep_the_other_defaults() {
        let c = load_str(
            "[defaults]\nmemory_bytes = \"256MiB\"\n[caps]\nwall_time = \"10m\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.defaults.memory_bytes, ByteSize(256 << 20));
        assert_eq!(c.defaults.pids, default_limits().pids);
        assert_eq!(c.caps.wall_time.0, Duration::from_secs(600));
    }

    #[test]
    fn defaults_over_caps_are_rejected() {
        let err = load_str("[defaults]\npids = 10000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("defaults.pids"), "{err}");
    }

    #[test]
    fn a_token_without_a_valid_digest_is_rejected() {
        let err = load_str(
            "[[tokens]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"abc\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tokens[0].sha256"), "{err}");
    }
}
