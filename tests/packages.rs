//! Packages without network. Organisers: `holdout image extend` installs a folder of wheels
//! into a derived runtime image offline and verifies it in a locked-down run; a challenge on
//! that image runs code that imports them. Participants: a solution ships its own wheel in
//! the archive and installs it under /tmp at start (`examples/digits/solutions/bundled-wheel`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use holdout::pb;

const PYTHON: &str = "holdout-python:1";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Writes a pure-Python wheel `<name>-<version>-py3-none-any.whl` into `dir`: the given
/// files, and a dist-info with METADATA, WHEEL and RECORD (no top_level.txt: the modules are
/// found from the entries).
fn write_wheel(dir: &Path, name: &str, version: &str, files: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(format!("{name}-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let info = format!("{name}-{version}.dist-info");
    let mut entries: Vec<(String, String)> = files
        .iter()
        .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
        .collect();
    entries.push((
        format!("{info}/METADATA"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
    ));
    entries.push((
        format!("{info}/WHEEL"),
        "Wheel-Version: 1.0\nGenerator: holdout-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .into(),
    ));
    let record: String = entries
        .iter()
        .map(|(p, _)| format!("{p},,\n"))
        .chain([format!("{info}/RECORD,,\n")])
        .collect();
    entries.push((format!("{info}/RECORD"), record));
    for (p, c) in entries {
        zip.start_file(p, options).unwrap();
        zip.write_all(c.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// Every entry of a wheel and its bytes.
fn wheel_contents(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut bytes).unwrap();
            (f.name().to_owned(), bytes)
        })
        .collect()
}

/// A tag of our own, removed from the engine when dropped.
struct Tag(String);

impl Tag {
    fn new(what: &str) -> Tag {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Tag(format!(
            "holdout-test-{what}-{}-{nanos}:1",
            std::process::id()
        ))
    }

    fn exists(&self) -> bool {
        std::process::Command::new("docker")
            .args(["image", "inspect", &self.0])
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

/// `holdout image extend`: success, stdout, stderr.
async fn extend(wheels: &Path, tag: &Tag, extra: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
        .args(["image", "extend", "--from", PYTHON, "--wheels"])
        .arg(wheels)
        .args(["--tag", &tag.0])
        .args(extra)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PARITY_TOOLS: &str = r#"
def label(x):
    return "even" if int(x) % 2 == 0 else "odd"
"#;

const PARITY_MAIN: &str = r#"
import csv, os
import parity_tools, parity_extra
rows = list(csv.DictReader(open(os.path.join(os.environ["HOLDOUT_DATA"], "test.csv"))))
with open(os.path.join(os.environ["HOLDOUT_OUTPUT"], "predictions.csv"), "w") as out:
    out.write("id,label\n")
    for r in rows:
        out.write(f"{r['id']},{parity_tools.label(r['x'])}\n")
print("parity_tools from", parity_tools.__file__, parity_extra.ANSWER)
"#;

#[tokio::test]
async fn wheels_installed_offline_into_a_derived_image_are_imported_by_a_run_on_it() {
    within(300, async {
        let wheels = tempfile::tempdir().unwrap();
        write_wheel(
            wheels.path(),
            "parity_tools",
            "1.0",
            &[
                ("parity_tools/__init__.py", PARITY_TOOLS),
                ("parity_extra.py", "ANSWER = 42\n"),
            ],
        );
        // Not in the requirements: stays out of the image.
        write_wheel(
            wheels.path(),
            "unused_pkg",
            "2.0",
            &[("unused_pkg/__init__.py", "")],
        );
        let requirements = wheels.path().join("requirements.txt");
        std::fs::write(&requirements, "# approved\nParity-Tools==1.0\n").unwrap();
        let tag = Tag::new("parity-tools");
        let (ok, out, err) = extend(
            wheels.path(),
            &tag,
            &["--requirements", requirements.to_str().unwrap()],
        )
        .await;
        assert!(ok, "{out}\n{err}");
        assert!(
            err.contains("Step 1/"),
            "the build's output is shown: {err}"
        );
        for line in [
            "imported    parity_extra from /usr/local/lib/",
            "imported    parity_tools from /usr/local/lib/",
        ] {
            assert!(out.contains(line), "{line:?} in {out}");
        }
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("image id    "))
            .unwrap()
            .to_owned();
        let engine_id = std::process::Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", &tag.0])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&engine_id.stdout).trim(), id);
        // The snippet pastes into a challenge file as is.
        let snippet = &out[out.find("\n[runtime]\n").unwrap()..];
        let pasted: toml::Table = toml::from_str(snippet).unwrap();
        assert_eq!(pasted["runtime"]["image"].as_str(), Some(tag.0.as_str()));
        assert_eq!(
            pasted["runtime"]["image_digest"].as_str(),
            Some(id.as_str())
        );
        // The image keeps its base's user, and only what the requirements asked for.
        let user = std::process::Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Config.User}}", &tag.0])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65534:65534");
        let unused = std::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                &tag.0,
                "python3",
                "-c",
                "import unused_pkg",
            ])
            .output()
            .unwrap();
        assert!(!unused.status.success(), "unused_pkg was installed");

        // A challenge on the derived image, pinned to its id.
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        let mut c = parity_challenge("parity", "parity");
        c.runtime = Some(pb::Runtime {
            image: tag.0.clone(),
            image_digest: id.clone(),
            command: vec!["python3".into(), "/submission/main.py".into()],
            ..Default::default()
        });
        let created = create(&server, c).await.unwrap();
        assert_eq!(created.runtime.unwrap().image_digest, id);
        let client = server.client(&server.submitter).await;
        let archive = tar_gz(&[("main.py", PARITY_MAIN)]);
        for meta in [smoke("parity", "alice"), full("parity", "alice")] {
            let s = client.submit(meta, archive.clone()).await.unwrap();
            let last = client.watch(&s.id, |_| {}).await.unwrap();
            assert_eq!(last.verdict, pb::Verdict::Scored as i32, "{last:?}");
            assert_eq!(last.scores["accuracy"], 1.0, "{last:?}");
        }
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn a_module_that_does_not_import_in_a_locked_down_run_is_named_and_no_image_is_left() {
    within(300, async {
        let wheels = tempfile::tempdir().unwrap();
        write_wheel(wheels.path(), "fine_pkg", "1.0", &[("fine_pkg/__init__.py", "")]);
        // Imports fine with network, never in a run: the check runs like a participant's code.
        write_wheel(
            wheels.path(),
            "phones_home",
            "0.3",
            &[(
                "phones_home.py",
                "import socket\nsocket.create_connection((\"1.1.1.1\", 53), timeout=3).close()\n",
            )],
        );
        let tag = Tag::new("phones-home");
        let (ok, out, err) = extend(wheels.path(), &tag, &[]).await;
        assert!(!ok, "{out}");
        assert!(
            err.contains(&format!(
                "module phones_home (from phones_home-0.3-py3-none-any.whl) does not import in a locked-down run of {}: OSError",
                tag.0
            )),
            "{err}"
        );
        assert!(err.contains("the image was removed"), "{err}");
        assert!(!tag.exists(), "a failed image was left tagged");

        // A wheel for another platform is refused by the offline installer, naming it.
        let other = tempfile::tempdir().unwrap();
        let wheel = write_wheel(other.path(), "native", "1.0", &[("native/__init__.py", "")]);
        std::fs::rename(&wheel, other.path().join("native-1.0-cp311-cp311-win_amd64.whl")).unwrap();
        let tag = Tag::new("win-wheel");
        let (ok, _, err) = extend(other.path(), &tag, &[]).await;
        assert!(!ok);
        assert!(err.contains("no wheel of native fits Python 3.11"), "{err}");
        assert!(err.contains("native-1.0-cp311-cp311-win_amd64.whl"), "{err}");
        assert!(!tag.exists());

        let empty = tempfile::tempdir().unwrap();
        let (ok, _, err) = extend(empty.path(), &Tag::new("empty"), &[]).await;
        assert!(!ok && err.contains("holds no .whl file"), "{err}");
    })
    .await
}

#[tokio::test]
async fn a_solution_that_bundles_its_own_wheel_scores_exactly_like_good() {
    within(600, async {
        let server = spawn_app().await;
        let data = server.data_root.join("digits");
        let made = tokio::process::Command::new(repo().join("examples/digits/make_data.sh"))
            .arg(&data)
            .status()
            .await
            .unwrap();
        assert!(made.success());
        server.write_data("digits", &[]);
        let c = holdout::cli::read_challenge_file(&repo().join("examples/digits/challenge.toml"))
            .unwrap();
        create(&server, c).await.unwrap();
        let client = server.client(&server.submitter).await;
        let admin = server.client(&server.admin).await;
        let mut exact = Vec::new();
        for name in ["good", "bundled-wheel"] {
            let dir = repo().join("examples/digits/solutions").join(name);
            let s = client
                .submit(
                    full("digits", name),
                    holdout::cli::archive_bytes(&dir).unwrap(),
                )
                .await
                .unwrap();
            let last = client.watch(&s.id, |_| {}).await.unwrap();
            assert_eq!(last.verdict, pb::Verdict::Scored as i32, "{name}: {last:?}");
            let seen = admin
                .submissions()
                .get_submission(authed(&server.admin, pb::GetSubmissionRequest { id: s.id }))
                .await
                .unwrap()
                .into_inner();
            exact.push((seen.public_scores_exact, seen.private_scores_exact));
        }
        assert_eq!(
            exact[0], exact[1],
            "bundled-wheel predicts what good predicts"
        );
        assert!(exact[1].0["accuracy"] >= 0.97, "{exact:?}");
        // The wheel in the example is the one make_wheel.py builds from wheel-src/.
        let rebuilt = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            rebuilt.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let built = tokio::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--read-only",
                "--user",
                "65534:65534",
                "-v",
            ])
            .arg(format!(
                "{}:/src:ro",
                repo().join("examples/digits").display()
            ))
            .arg("-v")
            .arg(format!("{}:/out", rebuilt.path().display()))
            .args([PYTHON, "python3", "/src/make_wheel.py", "/out"])
            .output()
            .await
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let name = "digits_helpers-0.1.0-py3-none-any.whl";
        assert_eq!(
            wheel_contents(&rebuilt.path().join(name)),
            wheel_contents(
                &repo()
                    .join("examples/digits/solutions/bundled-wheel/wheels")
                    .join(name)
            ),
            "the committed wheel is stale: run examples/digits/make_wheel.py"
        );
    })
    .await
}
