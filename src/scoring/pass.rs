//! The row pass: turns runs of predictions lines into per-part metric totals.
//!
//! Owns the hot loop of scoring: taking each line's fields (from `csv`'s splitters), parsing
//! each prediction, finding the label row of its id, refusing duplicates, and feeding the
//! totals of the row's part (and its loss, when asked for). Its memory is bounded by the labels,
//! never by the predictions: a row whose id is unknown is only counted (the file is refused),
//! and a predicted class the labels lack is numbered by `unknown_classes` once its row is
//! known to be valid. Rows whose ids follow the labels' order are matched by comparing
//! with the next label row. The others go through a software pipeline: on arrival a row's id
//! is hashed and its home slot prefetched; [`SLOT_DISTANCE`] rows later the slot is read and the
//! likely row's id bounds and target prefetched; [`BOUNDS_DISTANCE`] rows later its id bytes;
//! and [`SETTLE_DISTANCE`] rows later it is checked and settled, in file order. So each cache
//! miss has many rows' work to hide behind, and dozens are in flight at once.
//!
//! A pass can start anywhere on a line boundary, so two passes can score the two halves of a
//! large file on two threads and be merged. Run from the file's start, a pass reports exactly
//! the first problem a line-by-line reading would, with its line number; a pass over a later
//! range numbers lines from its own start, so its caller must rescan from the start to report.
//! Like [`crate::scoring::predictions`], its messages must never reveal a label or a split.

use std::io::Read;
use std::sync::atomic::Ordering;

use crate::scoring::csv::{self, Fields, LineReader, PlainLine};
use crate::scoring::errors::{PredictionsError, UNKNOWN_IDS_QUOTED, quote_id};
use crate::scoring::labels::LabelSet;
use crate::scoring::metrics::{Metric, PartTotals, score_key};
use crate::scoring::plan::{Plan, Prediction};
use crate::scoring::unknown_classes::UnknownClasses;

/// Rows between a row's arrival (its home slot prefetched) and reading that slot to prefetch
/// the row's id bounds and target.
const SLOT_DISTANCE: usize = 32;
/// Rows between arrival and reading the id bounds to prefetch the id bytes.
const BOUNDS_DISTANCE: usize = 64;
/// Rows between arrival and settling: by then all its lines should be cached.
const SETTLE_DISTANCE: usize = 96;
/// No guessed row: the id must be looked up.
const UNRESOLVED: usize = usize::MAX;
/// The id was searched for and is not in the labels.
const ABSENT: usize = usize::MAX - 1;
/// A parsed class the labels do not have, until its row is known to count and it is numbered
/// (see [`Pass::number_unknown_class`]).
const UNKNOWN_CLASS: usize = usize::MAX;

/// A row parsed and waiting for its id to be looked up.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The id's bounds in the chunk.
    id: (usize, usize),
    /// The id's index hash.
    hash: u64,
    /// The row matched by the in-order guess or a search, [`ABSENT`], or [`UNRESOLVED`].
    row: usize,
    /// The likely row from the index, once its slot was read, or [`UNRESOLVED`].
    candidate: usize,
    /// Pipeline steps done: 0 arrived, 1 slot read, 2 id prefetched.
    step: u8,
    /// The parsed score or value.
    number: f64,
    /// The parsed class (never [`UNKNOWN_CLASS`]: such rows are not queued).
    class: usize,
    /// The line's number.
    line: u64,
}

/// The running state of one pass over a range of lines.
pub(crate) struct Pass<'p, 'a> {
    /// What is computed.
    plan: &'p Plan<'a>,
    /// Totals of the public part, then the private part.
    pub(crate) parts: [PartTotals; 2],
    /// Bit per label row: a row with this id was seen in this pass.
    pub(crate) seen: Vec<u64>,
    /// Rows whose id was found.
    pub(crate) matched: u64,
    /// Rows whose id is not in the labels.
    pub(crate) unknown: u64,
    /// The first few unknown ids, quoted.
    pub(crate) unknown_first: Vec<String>,
    /// Predicted classes the labels do not have, numbered (from `plan.classes` on) within a
    /// fixed bound of memory.
    unknown_classes: UnknownClasses,
    /// The label row after the last one matched: the guess for the next id.
    hint: usize,
    /// Whether the ids have been following the labels' order, so the guess is worth a look.
    in_order: bool,
    /// Data rows read (blank lines excluded).
    pub(crate) rows: usize,
    /// Rows in the lookup pipeline, oldest first.
    pipeline: std::collections::VecDeque<Pending>,
    /// Field splitter for lines with quotes or non-ASCII bytes.
    fields: Fields,
}

impl<'p, 'a> Pass<'p, 'a> {
    /// A fresh pass; its key vectors reserve the whole file's counts, which costs no memory
    /// until written.
    pub(crate) fn new(plan: &'p Plan<'a>) -> Self {
        let mut parts = [PartTotals::new(plan.classes), PartTotals::new(plan.classes)];
        for (part, count) in parts.iter_mut().zip(plan.key_counts) {
            part.negative_keys.reserve_exact(count[0]);
            part.positive_keys.reserve_exact(count[1]);
        }
        Self {
            plan,
            parts,
            seen: vec![0; plan.labels.len().div_ceil(64)],
            matched: 0,
            unknown: 0,
            unknown_first: Vec::new(),
            unknown_classes: UnknownClasses::new(),
            hint: 0,
            in_order: true,
            rows: 0,
            pipeline: std::collections::VecDeque::with_capacity(SETTLE_DISTANCE + 1),
            fields: Fields::default(),
        }
    }

    /// Scores every remaining line of `reader`; `line_no` is the number of the last line read
    /// before, and ends as the number of the last line.
    pub(crate) fn run<R: Read>(
        &mut self,
        reader: &mut LineReader<R>,
        line_no: &mut u64,
    ) -> Result<(), PredictionsError> {
        while let Some(chunk) = reader.next_chunk(*line_no)? {
            if csv::is_plain(chunk) {
                self.plain_chunk(chunk, line_no)?;
            } else {
                self.general_chunk(chunk, line_no)?;
            }
            self.flush(chunk)?;
        }
        Ok(())
    }

    /// Lines without quotes or non-ASCII bytes, split by the fast splitter: fields are byte
    /// ranges of the chunk.
    fn plain_chunk(&mut self, chunk: &[u8], line_no: &mut u64) -> Result<(), PredictionsError> {
        csv::split_plain(chunk, [self.plan.id_col, self.plan.pred_col], |line| {
            *line_no += 1;
            self.plain_line(chunk, line, *line_no)
        })
    }

    /// One line of a plain chunk, its fields already located.
    #[inline]
    fn plain_line(
        &mut self,
        chunk: &[u8],
        line: PlainLine,
        line_no: u64,
    ) -> Result<(), PredictionsError> {
        if line.is_blank(chunk) {
            return Ok(());
        }
        if line.fields != self.plan.width {
            self.flush(chunk)?;
            return Err(PredictionsError::WrongFieldCount {
                line: line_no,
                expected: self.plan.width,
                found: line.fields,
            });
        }
        let [id, pred] = line.wanted;
        let pred = &chunk[pred.0..pred.1];
        self.row(chunk, trim(chunk, id), pred.trim_ascii(), line_no)
    }

    /// Lines that may hold quotes or non-ASCII bytes: each is checked and split on its own,
    /// and looked up at once (its fields may live in the splitter's scratch, not the chunk).
    fn general_chunk(&mut self, chunk: &[u8], line_no: &mut u64) -> Result<(), PredictionsError> {
        let mut fields = std::mem::take(&mut self.fields);
        let result = csv::each_line(chunk, line_no, |line_no, line| {
            let problem = match fields.split_checked(line) {
                Err(problem) => Some(PredictionsError::bad_line(line_no, problem)),
                Ok(()) if fields.len() != self.plan.width => {
                    Some(PredictionsError::WrongFieldCount {
                        line: line_no,
                        expected: self.plan.width,
                        found: fields.len(),
                    })
                }
                Ok(()) => None,
            };
            self.flush(chunk)?;
            if let Some(problem) = problem {
                return Err(problem);
            }
            let id = fields.get(line, self.plan.id_col);
            let pred = fields.get(line, self.plan.pred_col);
            self.rows += 1;
            let (number, mut class) = self.parse(pred, line_no)?;
            let row = self.plan.labels.find(id, self.hint);
            if class == UNKNOWN_CLASS {
                class = self.number_unknown_class(row, pred);
            }
            self.settle(row, id, number, class, line_no)
        });
        self.fields = fields;
        result
    }

    /// Parses a prediction and queues its row for lookup (or settles it at once when it is
    /// the next label row and nothing is queued).
    #[inline]
    fn row(
        &mut self,
        chunk: &[u8],
        id: (usize, usize),
        pred: &[u8],
        line: u64,
    ) -> Result<(), PredictionsError> {
        self.rows += 1;
        // A bad value is reported after the queued rows settle, as a line-by-line reading
        // would find a duplicate among them first.
        let (number, class) = match self.parse(pred, line) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.flush(chunk)?;
                return Err(e);
            }
        };
        let labels = self.plan.labels;
        let id_bytes = &chunk[id.0..id.1];
        if class == UNKNOWN_CLASS {
            // Rare in a real file, and its name is needed when it settles: looked up at once,
            // after the queued rows, so nothing but its number outlives the chunk.
            self.flush(chunk)?;
            let row = labels.find(id_bytes, self.hint);
            let class = self.number_unknown_class(row, pred);
            return self.settle(row, id_bytes, number, class, line);
        }
        let known = if self.in_order && labels.row_has_id(self.hint, id_bytes) {
            Some(Some(self.hint))
        } else {
            labels.find_without_index(id_bytes)
        };
        if let (Some(row), true) = (known, self.pipeline.is_empty()) {
            return self.settle(row, id_bytes, number, class, line);
        }
        let (hash, row) = match known {
            Some(row) => (0, row.unwrap_or(ABSENT)),
            None => (labels.hash_and_prefetch(id_bytes), UNRESOLVED),
        };
        self.pipeline.push_back(Pending {
            id,
            hash,
            row,
            candidate: UNRESOLVED,
            step: 0,
            number,
            class,
            line,
        });
        let n = self.pipeline.len();
        if n > SLOT_DISTANCE {
            read_slot(labels, &mut self.pipeline[n - 1 - SLOT_DISTANCE]);
        }
        if n > BOUNDS_DISTANCE {
            prefetch_id(labels, &mut self.pipeline[n - 1 - BOUNDS_DISTANCE]);
        }
        if n > SETTLE_DISTANCE {
            let p = self
                .pipeline
                .pop_front()
                .expect("the pipeline is not empty");
            self.settle_pending(chunk, p)?;
        }
        Ok(())
    }

    /// Drains the pipeline: finishes every queued row's lookup and settles them in order.
    fn flush(&mut self, chunk: &[u8]) -> Result<(), PredictionsError> {
        let labels = self.plan.labels;
        for p in self.pipeline.iter_mut() {
            read_slot(labels, p);
        }
        for p in self.pipeline.iter_mut() {
            prefetch_id(labels, p);
        }
        while let Some(p) = self.pipeline.pop_front() {
            if let Err(e) = self.settle_pending(chunk, p) {
                self.pipeline.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Finds a queued row's label row and settles it.
    #[inline]
    fn settle_pending(&mut self, chunk: &[u8], p: Pending) -> Result<(), PredictionsError> {
        let id = &chunk[p.id.0..p.id.1];
        let row = match p.row {
            UNRESOLVED => self.plan.labels.find_hashed(id, p.hash),
            ABSENT => None,
            row => Some(row),
        };
        self.settle(row, id, p.number, p.class, p.line)
    }

    /// Parses the prediction field for the spec: a number (finite, a probability when log
    /// loss is computed) or a class ([`UNKNOWN_CLASS`] when the labels do not have it).
    #[inline]
    fn parse(&mut self, pred: &[u8], line: u64) -> Result<(f64, usize), PredictionsError> {
        match self.plan.kind {
            Prediction::Score | Prediction::Value => {
                let number =
                    csv::parse_f64(pred).ok_or(PredictionsError::UnparsableNumber { line })?;
                if !number.is_finite() {
                    return Err(PredictionsError::NotFinite { line });
                }
                if self.plan.check_probability && !(0.0..=1.0).contains(&number) {
                    return Err(PredictionsError::ProbabilityOutOfRange { line });
                }
                Ok((number, 0))
            }
            Prediction::Class => {
                if pred.is_empty() {
                    return Err(PredictionsError::EmptyPrediction { line });
                }
                let class = self.plan.labels.class_by_name(pred);
                Ok((0.0, class.unwrap_or(UNKNOWN_CLASS)))
            }
        }
    }

    /// The number of `name`, a predicted class the labels lack, on a row about to settle as
    /// `row`. Numbered only when the row will count (its id is known and not seen yet): a row
    /// with an unknown or repeated id is refused or only counted by [`Self::settle`], before
    /// its class is read, and must cost no memory.
    #[cold]
    fn number_unknown_class(&mut self, row: Option<usize>, name: &[u8]) -> usize {
        match row {
            Some(row) if self.seen[row / 64] >> (row % 64) & 1 == 0 => {
                self.plan.classes + self.unknown_classes.number(name)
            }
            _ => UNKNOWN_CLASS,
        }
    }

    /// Joins a parsed row with its label row (`None`: the id is unknown) and adds it to the
    /// totals of its part.
    #[inline]
    fn settle(
        &mut self,
        row: Option<usize>,
        id: &[u8],
        number: f64,
        class: usize,
        line: u64,
    ) -> Result<(), PredictionsError> {
        let Some(row) = row else {
            self.unknown += 1;
            if self.unknown_first.len() < UNKNOWN_IDS_QUOTED {
                self.unknown_first.push(quote_id(id));
            }
            return Ok(());
        };
        // Follow the labels' order while the file does; once it does not, stop paying for a
        // guess on every row, and look again every 1024 rows. A pass's first row may start
        // anywhere (the second half of a file), so the guess is tried after it too.
        self.in_order = row == self.hint || self.rows & 1023 == 0 || self.matched == 0;
        self.hint = row + 1;
        let bit = 1u64 << (row % 64);
        if self.seen[row / 64] & bit != 0 {
            return Err(PredictionsError::DuplicateId {
                id: quote_id(id),
                line,
            });
        }
        self.seen[row / 64] |= bit;
        self.matched += 1;

        let plan = self.plan;
        let labels = plan.labels;
        let public = labels.is_public(row);
        let part = &mut self.parts[usize::from(!public)];
        part.rows += 1;
        let loss = match plan.kind {
            Prediction::Class => {
                let truth = labels.class_of(row);
                part.add_class(truth, class);
                f64::from(u8::from(truth != class))
            }
            Prediction::Score => {
                let is_positive = labels.is_positive(row);
                let truth = if is_positive {
                    plan.positive
                } else {
                    plan.negative
                }
                .unwrap_or(0);
                let mut loss = 0.0;
                if plan.wants_classes {
                    let predicted = match plan.threshold {
                        Some(t) if number >= t => plan.positive,
                        _ => plan.negative,
                    }
                    .unwrap_or(0);
                    part.add_class(truth, predicted);
                    loss = f64::from(u8::from(truth != predicted));
                }
                if plan.check_probability {
                    let row_loss = part.add_log_loss(is_positive, number);
                    if plan.loss_metric == Some(Metric::LogLoss) {
                        loss = row_loss;
                    }
                }
                if plan.wants_keys {
                    let key = score_key(number);
                    if is_positive {
                        part.positive_keys.push(key)
                    } else {
                        part.negative_keys.push(key)
                    }
                }
                loss
            }
            Prediction::Value => {
                let e = part.add_value(labels.value_of(row), number);
                if plan.loss_metric == Some(Metric::Mae) {
                    e.abs()
                } else {
                    e * e
                }
            }
        };
        if plan.loss_metric.is_some() && public {
            let rank = labels.public_rank(&plan.public_ranks, row);
            // A loss past f32's range (a squared error above 3.4e38, while the metric itself is
            // still finite in f64) is kept as f32::MAX: as bad a loss as can be stored, and
            // never an infinity in the Ladder's sums.
            let loss = (loss as f32).min(f32::MAX);
            plan.losses[rank].store(loss.to_bits(), Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Pipeline step 1: read the (prefetched) home slot, prefetch the likely row's bounds and target.
#[inline]
fn read_slot(labels: &LabelSet, p: &mut Pending) {
    if p.step == 0 {
        p.step = 1;
        if p.row == UNRESOLVED {
            p.candidate = labels.prefetch_candidate(p.hash).unwrap_or(UNRESOLVED);
        }
    }
}

/// Pipeline step 2: read the (prefetched) id bounds, prefetch the id bytes.
#[inline]
fn prefetch_id(labels: &LabelSet, p: &mut Pending) {
    if p.step == 1 {
        p.step = 2;
        if p.candidate != UNRESOLVED {
            labels.prefetch_id(p.candidate);
        }
    }
}

/// The bounds of a field without its surrounding ASCII whitespace.
#[inline]
fn trim(chunk: &[u8], (mut start, mut end): (usize, usize)) -> (usize, usize) {
    while start < end && chunk[start].is_ascii_whitespace() {
        start += 1;
    }
    while end > start && chunk[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    (start, end)
}
