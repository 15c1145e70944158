//! One streaming pass over one CSV file, feeding every analysis that needs its rows.
//!
//! Owns the per-row work — column types and missing values, ids, the targets of a labels
//! file (`targets`), the leakage sample ([`leakage`](super::leakage)), personal-data detectors
//! ([`pii`]), k-anonymity groups ([`kanon`](super::kanon)) and feature-row hashes, either
//! collected (to be merged later) or probed against a small set in memory — in a
//! [`Worker`] whose accumulators merge. A large inputs file is cut into chunks of whole
//! records that several workers take in turn ([`parallel`](super::parallel)); a small file
//! is read by one worker. Either way the file is read and hashed (SHA-256)
//! on its own thread ([`prefetch`](super::prefetch)). Memory per file is the read buffers
//! plus what each analysis bounds itself; nothing grows with the row count.
//!
//! It must never copy a cell into anything that leaves the check.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Progress;
use super::columns::ColumnPii;
use super::csv_stream::{CsvError, CsvReader};
use super::head::Head;
use super::idset::{Builder, Sorted};
use super::kanon::KanonAcc;
use super::layout::LayoutFile;
use super::leakage::LeakSample;
pub use super::lookup::{Labeller, RowSet};
use super::prefetch::Prefetch;
use super::report::ColumnSummary;
use super::targets::LabelsAcc;
use super::worker::{Shared, Worker};

/// Rows between two progress reports.
const PROGRESS_ROWS: u64 = 1 << 14;

/// Files at least this large are scanned by several workers (tests
/// use a small threshold so the chunked path runs on small fixtures).
pub const PARALLEL_BYTES: u64 = if cfg!(test) { 2 << 10 } else { 16 << 20 };

#[cfg(test)]
thread_local! {
    /// Tests set this to read every file in order, to compare with the chunked path.
    pub static SEQUENTIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// What to do during the pass.
pub struct Pass<'a> {
    /// The id column.
    pub id: Option<usize>,
    /// Collect the ids' hashes.
    pub want_ids: bool,
    /// Labels files: reads the targets.
    pub labels: Option<LabelsAcc>,
    /// Where labels come from.
    pub labeller: Labeller<'a>,
    /// Feature-row sets.
    pub row_sets: Vec<RowSet>,
    /// Run the personal-data detectors.
    pub pii: bool,
    /// Birth-date-like dates are up to this year.
    pub max_birth_year: i32,
    /// k-anonymity groups.
    pub kanon: Option<KanonAcc>,
    /// The leakage sample.
    pub leak: Option<LeakSample>,
}

/// What one pass found.
pub struct Scanned {
    /// Data rows.
    pub rows: u64,
    /// Per-column summaries.
    pub columns: Vec<ColumnSummary>,
    /// The ids' hashes (non-empty ids only), one set per worker.
    pub ids: Vec<Sorted>,
    /// Rows with an empty id.
    pub empty_ids: u64,
    /// Rows whose label was found.
    pub labelled: u64,
    /// The feature-row sets, with their results.
    pub row_sets: Vec<RowSet>,
    /// SHA-256, hex.
    pub sha256: String,
    /// Rows with the wrong number of fields.
    pub ragged: u64,
    /// Rows that are not valid UTF-8.
    pub not_utf8: u64,
    /// Records spanning lines.
    pub multiline: u64,
    /// Why the pass stopped early.
    pub error: Option<CsvError>,
    /// Personal-data counts per column (when asked).
    pub pii: Vec<ColumnPii>,
    /// k-anonymity groups (when asked).
    pub kanon: Option<KanonAcc>,
    /// The leakage sample (when asked).
    pub leak: Option<LeakSample>,
    /// The targets (labels files).
    pub labels: Option<LabelsAcc>,
    /// The first row number of each chunk the file was cut into.
    pub chunk_offsets: Vec<u64>,
}

impl Scanned {
    /// A file that could not be read at all.
    pub fn failed(e: CsvError) -> Self {
        Self {
            rows: 0,
            columns: Vec::new(),
            ids: Vec::new(),
            empty_ids: 0,
            labelled: 0,
            row_sets: Vec::new(),
            sha256: String::new(),
            ragged: 0,
            not_utf8: 0,
            multiline: 0,
            error: Some(e),
            pii: Vec::new(),
            kanon: None,
            leak: None,
            labels: None,
            chunk_offsets: vec![0],
        }
    }
}

/// The SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path, progress: &mut dyn Progress) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress.advance(done);
    }
}

/// Runs one pass over `file`. Problems with the file are in the result; an error is a
/// failure of the check's own temporary storage.
pub fn scan(
    file: &LayoutFile,
    head: &Head,
    mut pass: Pass<'_>,
    progress: &mut dyn Progress,
) -> io::Result<Scanned> {
    let sets = std::mem::take(&mut pass.row_sets);
    let sh = Shared {
        ncols: head.names.len(),
        id: pass.id,
        want_ids: pass.want_ids,
        labeller: &pass.labeller,
        pii: pass.pii,
        max_birth_year: pass.max_birth_year,
        sets: &sets,
    };
    let first = Worker::new(&sh, pass.leak.take(), pass.kanon.take(), pass.labels.take());
    #[cfg(test)]
    let forced = SEQUENTIAL.with(std::cell::Cell::get);
    #[cfg(not(test))]
    let forced = false;
    let parallel = file.bytes >= PARALLEL_BYTES && !forced;
    let run = if parallel {
        super::parallel::scan(file, head, &sh, &first, progress)?
    } else {
        None
    };
    let (mut w, mut extra, offsets, error, digest) = match run {
        Some(done) => (
            done.worker,
            done.ids_and_sets,
            done.offsets,
            None,
            done.digest,
        ),
        None => sequential(file, head, &sh, first, progress)?,
    };
    let mut ids = std::mem::take(&mut extra.0);
    ids.extend(w.ids.take().map(Builder::finish).transpose()?);
    let sha256 = match digest {
        Some(d) => hex::encode(d),
        None => sha256_file(&file.path, progress).unwrap_or_default(),
    };
    let mut row_sets = sets;
    for ((set, mine), mut collected) in row_sets
        .iter_mut()
        .zip(std::mem::take(&mut w.sets))
        .zip(extra.1)
    {
        collected.extend(mine.collect.map(Builder::finish).transpose()?);
        set.collected = collected;
        set.train_hits = mine.train_hits;
        if let Some(p) = mine.prefixes {
            set.prefixes = p;
        }
        for (map, seen) in set.samples.iter_mut().zip(mine.seen) {
            for h in seen {
                if let Some(e) = map.get_mut(&h) {
                    e.1 = true;
                }
            }
        }
    }
    let columns = w
        .cols
        .iter()
        .zip(&head.shown)
        .map(|(acc, name)| ColumnSummary {
            name: name.clone(),
            kind: acc.kind(),
            missing: acc.missing,
        })
        .collect();
    Ok(Scanned {
        rows: w.rows,
        columns,
        ids,
        empty_ids: w.empty_ids,
        labelled: w.labelled,
        row_sets,
        sha256,
        ragged: w.ragged,
        not_utf8: w.not_utf8,
        multiline: w.multiline,
        error,
        pii: w.pii,
        kanon: w.kanon,
        leak: w.leak,
        labels: w.labels,
        chunk_offsets: offsets,
    })
}

/// (worker, (extra id sets, extra row sets per set), chunk offsets, error, digest).
type Outcome = (
    Worker,
    (Vec<Sorted>, Vec<Vec<Sorted>>),
    Vec<u64>,
    Option<CsvError>,
    Option<[u8; 32]>,
);

/// One worker reads the whole file, in order.
fn sequential(
    file: &LayoutFile,
    head: &Head,
    sh: &Shared<'_>,
    mut w: Worker,
    progress: &mut dyn Progress,
) -> io::Result<Outcome> {
    let extra = (Vec::new(), (0..sh.sets.len()).map(|_| Vec::new()).collect());
    let f = match Prefetch::open(&file.path) {
        Ok(f) => f,
        Err(e) => return Ok((w, extra, vec![0], Some(CsvError::Io(e)), None)),
    };
    let mut r = CsvReader::new(f, head.delimiter);
    let mut error = r.next_record().err();
    let mut k = 0u64;
    while error.is_none() {
        match r.next_record() {
            Ok(Some(rec)) => w.row(sh, &rec, 0, k)?,
            Ok(None) => break,
            Err(e) => error = Some(e),
        }
        k += 1;
        if k.is_multiple_of(PROGRESS_ROWS) {
            progress.advance(r.bytes_read());
        }
    }
    w.multiline += r.multiline_records();
    let digest = r.into_inner().finish().ok();
    Ok((w, extra, vec![0], error, digest))
}
