//! What the partition and scale-out benchmarks share: tokens, the trivial parity challenge
//! and its data, the archive of a shell script, and permissions the sandbox user can read.

use std::path::Path;

use holdout::auth;
use holdout::config::{Role, TokenConfig};
use holdout::pb;

pub const ADMIN: &str = "bench-admin-token";
pub const SUBMITTER: &str = "bench-submitter-token";

/// A solution that answers every row right.
pub const ANSWER: &str = r#"awk -F, 'NR==1{print "id,label"; next}{print $1","(($2%2==0)?"even":"odd")}' /data/test.csv > /output/predictions.csv
"#;

/// An admin and one platform.
pub fn tokens() -> Vec<TokenConfig> {
    vec![
        TokenConfig {
            name: "admin".into(),
            role: Role::Admin,
            sha256: auth::digest(ADMIN),
        },
        TokenConfig {
            name: "portal".into(),
            role: Role::Submitter,
            sha256: auth::digest(SUBMITTER),
        },
    ]
}

/// The challenge's data under `root/data/bench`, readable by the sandbox user.
pub fn write_data(root: &Path) {
    let data = root.join("data/bench");
    for (path, text) in [
        ("inputs/test.csv", "id,x\nr1,1\nr2,2\nr3,3\nr4,4\n"),
        ("labels.csv", "id,label\nr1,odd\nr2,even\nr3,odd\nr4,even\n"),
        ("sample/inputs/test.csv", "id,x\ns1,4\ns2,7\n"),
        ("sample/labels.csv", "id,label\ns1,even\ns2,odd\n"),
    ] {
        let p = data.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    open_up(root);
}

/// The busybox parity challenge "bench"; `concurrency` 0 = the server's limit only.
pub fn challenge(concurrency: u32) -> pb::Challenge {
    pb::Challenge {
        id: "bench".into(),
        data_dir: "bench".into(),
        runtime: Some(pb::Runtime {
            image: "holdout-busybox:1".into(),
            command: vec!["sh".into(), "/submission/run.sh".into()],
            ..Default::default()
        }),
        scoring: Some(pb::Scoring {
            scorer: Some(pb::scoring::Scorer::Builtin(pb::BuiltinMetric {
                metric: pb::Metric::Accuracy as i32,
                target_column: "label".into(),
                ..Default::default()
            })),
            id_column: "id".into(),
            public_fraction: 0.5,
            split_seed: 1,
        }),
        limits: Some(pb::Limits {
            wall_time: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            memory_bytes: 64 << 20,
            concurrency,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A tar.gz holding `run.sh`.
pub fn archive(script: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run.sh"), script).unwrap();
    let mut out = Vec::new();
    holdout::archive::pack_dir(dir.path(), &mut out).unwrap();
    out
}

/// Folders 0755 and files 0644 up from `root`, so the sandbox user can read the data.
fn open_up(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = if meta.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
}
