//! The organiser's local preparation commands, which need no server:
//! `holdout challenge check DIR`, `holdout prepare pseudonymise` and `holdout prepare key`.
//!
//! Exit codes: 0 when the check finds no error, 1 when it does, 2 for a usage or I/O
//! problem. Output carries only what the report carries (counts and names); the generalised
//! keys of small sample groups go to stderr, and only with `--show-groups`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::prepare::pseudonymise::{Key, Rules, Summary, pseudonymise};
use crate::prepare::{
    self, CardMeta, CheckSpec, Generalisation, NoProgress, Progress, Report, Severity,
};
use crate::scoring::Metric;

/// `holdout challenge check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The challenge's data folder (labels.csv, inputs/, sample/).
    pub dir: PathBuf,
    /// The challenge file: its [scoring] and [preparation] tables say what to check.
    #[arg(long)]
    pub challenge: Option<PathBuf>,
    /// Write the data cards here: card.md and card.json (admins), card.public.md and
    /// card.public.json (safe to show participants).
    #[arg(long)]
    pub card_dir: Option<PathBuf>,
    /// The id column (default: the challenge file's, else "id").
    #[arg(long)]
    pub id_column: Option<String>,
    /// The target column (default: the challenge file's).
    #[arg(long)]
    pub target_column: Option<String>,
    /// The metric (default: the challenge file's).
    #[arg(long)]
    pub metric: Option<Metric>,
    /// A quasi-identifier column (repeatable; replaces the challenge file's list).
    #[arg(long = "quasi-identifier")]
    pub quasi_identifiers: Vec<String>,
    /// The smallest group allowed in the public sample.
    #[arg(long)]
    pub min_k: Option<u64>,
    /// Also scan inputs/ for personal data and k-anonymity.
    #[arg(long)]
    pub scan_inputs: bool,
    /// Print the generalised keys of the sample's smallest groups to stderr (this terminal
    /// only: never in --json, a card or a stored report).
    #[arg(long)]
    pub show_groups: bool,
}

/// `holdout prepare ...`
#[derive(Debug, Subcommand)]
pub enum PrepareCommand {
    /// Replace direct identifiers with keyed tokens (HMAC-SHA-256) and generalise
    /// quasi-identifiers in a CSV file or a folder of them. This is pseudonymisation, not
    /// anonymisation: the output is still personal data under the GDPR. Declare the
    /// quasi-identifiers and run `holdout challenge check` on the result.
    Pseudonymise {
        /// The key file (32 bytes or more), kept outside the data: `holdout prepare key`.
        #[arg(long)]
        key_file: PathBuf,
        /// A column to replace with tokens (repeatable). The same value gets the same token
        /// in every file under the same key.
        #[arg(long = "column")]
        columns: Vec<String>,
        /// COLUMN:RULE, RULE being N (keep N leading characters), month, year or bin:WIDTH
        /// (repeatable).
        #[arg(long = "generalise", value_parser = parse_generalise)]
        generalise: Vec<(String, Generalisation)>,
        /// A CSV file or a folder.
        input: PathBuf,
        /// A new file or folder.
        output: PathBuf,
    },
    /// Write a new random key file (64 hex characters, mode 0600). Keep it away from the data.
    Key {
        /// Where to write it; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_generalise(s: &str) -> Result<(String, Generalisation), String> {
    let (col, rule) = s
        .split_once(':')
        .ok_or_else(|| format!("expected COLUMN:RULE, got {s:?}"))?;
    if col.is_empty() {
        return Err(format!("expected COLUMN:RULE, got {s:?}"));
    }
    Ok((col.to_owned(), rule.parse()?))
}

/// A progress line on a terminal, for files large enough to wait for.
struct TerminalProgress {
    file: String,
    bytes: u64,
    started: Instant,
    last: Option<Instant>,
}

/// Files smaller than this finish before a progress line would help.
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

impl Progress for TerminalProgress {
    fn start(&mut self, file: &str, bytes: u64) {
        self.file = file.to_owned();
        self.bytes = bytes;
        self.started = Instant::now();
        self.last = None;
    }

    fn advance(&mut self, done: u64) {
        if self.bytes < PROGRESS_MIN_BYTES
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        eprint!(
            "\r\x1b[2Kchecking {} {:.0}/{:.0} MiB ({:.0}%, {:.0} MiB/s)",
            self.file,
            mib(done),
            mib(self.bytes),
            100.0 * done as f64 / self.bytes.max(1) as f64,
            mib(done) / secs
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&mut self) {
        if self.last.is_some() {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// The spec from the challenge file and the flags.
fn spec_for(args: &CheckArgs) -> Result<(CheckSpec, CardMeta)> {
    let (mut spec, meta) = match &args.challenge {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let spec = CheckSpec::from_challenge_toml(&text)
                .with_context(|| format!("{}", path.display()))?;
            (spec, CardMeta::from_challenge_toml(&text))
        }
        None => (
            CheckSpec::new("id", None, None, 0.5, 0),
            CardMeta::default(),
        ),
    };
    if let Some(c) = &args.id_column {
        spec.id_column = c.clone();
    }
    if let Some(t) = &args.target_column {
        spec.target_column = Some(t.clone());
    }
    if let Some(m) = args.metric {
        spec.metric = Some(m);
    }
    if !args.quasi_identifiers.is_empty() {
        spec.preparation.quasi_identifiers = args.quasi_identifiers.clone();
    }
    if let Some(k) = args.min_k {
        spec.preparation.min_k = k;
    }
    spec.preparation.scan_inputs |= args.scan_inputs;
    spec.validate()?;
    Ok((spec, meta))
}

fn write_cards(dir: &Path, report: &Report, meta: &CardMeta) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let public = prepare::public_card(report, meta);
    let files = [
        ("card.md", prepare::full_card_markdown(report, meta)),
        (
            "card.json",
            serde_json::to_string_pretty(&prepare::full_card_json(report, meta))? + "\n",
        ),
        ("card.public.md", public.markdown()),
        (
            "card.public.json",
            serde_json::to_string_pretty(&public)? + "\n",
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_text(out: &mut impl Write, dir: &Path, report: &Report) -> std::io::Result<()> {
    writeln!(out, "holdout challenge check {}", dir.display())?;
    for f in &report.files {
        let rows = f.rows.map_or(String::new(), |r| {
            format!(", {r} rows, {} columns", f.columns.len())
        });
        writeln!(out, "  {} ({} bytes{rows})", f.path, f.bytes)?;
    }
    for f in &report.findings {
        writeln!(out, "{}", f.line())?;
    }
    let (e, w, i) = report.counts();
    let verdict = if e == 0 {
        "the challenge may open"
    } else {
        "the challenge must not open"
    };
    writeln!(out, "{e} errors, {w} warnings, {i} notes: {verdict}")
}

/// Runs `holdout challenge check`; returns the exit code.
pub fn run_check(args: &CheckArgs, json: bool) -> u8 {
    let (spec, meta) = match spec_for(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holdout challenge check: {e:#}");
            return 2;
        }
    };
    if spec.target_column.is_none() {
        eprintln!(
            "holdout challenge check: no target column (pass --challenge or --target-column): target checks are skipped"
        );
    }
    let mut terminal = TerminalProgress {
        file: String::new(),
        bytes: 0,
        started: Instant::now(),
        last: None,
    };
    let progress: &mut dyn Progress = if std::io::stderr().is_terminal() {
        &mut terminal
    } else {
        &mut NoProgress
    };
    let report = match prepare::check(&args.dir, &spec, progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("holdout challenge check: {e}");
            return 2;
        }
    };
    if let Some(dir) = &args.card_dir
        && let Err(e) = write_cards(dir, &report, &meta)
    {
        eprintln!("holdout challenge check: {e:#}");
        return 2;
    }
    let mut stdout = std::io::stdout().lock();
    let printed = if json {
        serde_json::to_writer_pretty(&mut stdout, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout))
    } else {
        print_text(&mut stdout, &args.dir, &report)
    };
    if let Err(e) = printed {
        eprintln!("holdout challenge check: cannot print the report: {e}");
        return 2;
    }
    if args.show_groups && !report.local.groups.is_empty() {
        eprintln!(
            "smallest groups of the public sample (their quasi-identifier values; shown here only, never stored):"
        );
        for (file, key, n) in &report.local.groups {
            eprintln!("  {file}: {key}  ({n} rows)");
        }
    }
    u8::from(report.with_severity(Severity::Error).next().is_some())
}

fn print_summary(s: &Summary, json: bool) {
    if json {
        let v = serde_json::json!({
            "files": s.files.iter().map(|f| serde_json::json!({
                "path": f.path,
                "rows": f.rows,
                "tokenised": f.tokenised.iter().map(|(c, n)| serde_json::json!({"column": c, "values": n})).collect::<Vec<_>>(),
                "generalised": f.generalised.iter().map(|(c, n, b)| serde_json::json!({"column": c, "values": n, "blanked": b})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "copied_unchanged": s.copied,
        });
        println!("{v:#}");
        return;
    }
    for f in &s.files {
        let t: Vec<String> = f
            .tokenised
            .iter()
            .map(|(c, n)| format!("{c}: {n} tokenised"))
            .collect();
        let g: Vec<String> = f
            .generalised
            .iter()
            .map(|(c, n, b)| {
                if *b > 0 {
                    format!("{c}: {n} generalised, {b} blanked (rule did not apply)")
                } else {
                    format!("{c}: {n} generalised")
                }
            })
            .collect();
        let what = t.into_iter().chain(g).collect::<Vec<_>>().join("; ");
        println!(
            "{} ({} rows){}{}",
            f.path,
            f.rows,
            if what.is_empty() { "" } else { ": " },
            what
        );
    }
    if !s.copied.is_empty() {
        println!(
            "copied unchanged (not CSV; check them yourself): {}",
            s.copied.join(", ")
        );
    }
    println!(
        "pseudonymised, not anonymised: still personal data. Keep the key apart and run `holdout challenge check` with quasi-identifiers declared."
    );
}

fn run_prepare_inner(cmd: &PrepareCommand, json: bool) -> Result<()> {
    match cmd {
        PrepareCommand::Key { out } => {
            Key::generate(out).with_context(|| format!("cannot create {}", out.display()))?;
            eprintln!(
                "wrote a new key to {} (mode 0600): keep it away from the data and its copies",
                out.display()
            );
        }
        PrepareCommand::Pseudonymise {
            key_file,
            columns,
            generalise,
            input,
            output,
        } => {
            if columns.is_empty() && generalise.is_empty() {
                anyhow::bail!("nothing to do: name columns with --column or --generalise");
            }
            let key = Key::load(key_file, input, output)?;
            let rules = Rules {
                tokenise: columns.clone(),
                generalise: generalise.clone(),
            };
            let summary = pseudonymise(input, output, &key, &rules)?;
            print_summary(&summary, json);
        }
    }
    Ok(())
}

/// Runs `holdout prepare ...`; returns the exit code (0, or 2 on any problem).
pub fn run_prepare(cmd: &PrepareCommand, json: bool) -> u8 {
    match run_prepare_inner(cmd, json) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("holdout prepare: {e:#}");
            2
        }
    }
}
