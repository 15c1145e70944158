//! The rows of a labels file as they are parsed: ids interned, targets, split bits.
//!
//! Owns the hot loop of loading labels (split out of `labels` to keep each file to one
//! concern): each line's fields, its id kept inline while ids are short, its class or value,
//! its public bit. It checks rows one by one, with their line numbers; whole-file checks
//! (duplicates, classes, the split) are `labels`'s. Its messages are for the organiser, like
//! every [`LabelsError`].

use std::collections::HashMap;

use crate::scoring::csv::{self, Fields};
use crate::scoring::errors::{LabelsError, MAX_CLASSES};
use crate::scoring::index::SHORT_ID;
use crate::scoring::memory::advise_huge_pages;
use crate::scoring::spec::{LabelSpec, TargetKind};

/// The rows of a labels file as they are read: ids interned, targets, split bits.
pub(super) struct Rows<'s> {
    /// How the file is read.
    pub(super) spec: &'s LabelSpec,
    /// Index of the id column.
    pub(super) id_col: usize,
    /// Index of the target column.
    pub(super) target_col: usize,
    /// Fields per line, from the header.
    pub(super) width: usize,
    /// Each row's id as the index keeps a short one, while every id so far is short: built
    /// here rather than from `arena` so the ids are written once, not three times.
    pub(super) short: Vec<[u8; 8]>,
    /// All ids back to back, once an id is longer than [`SHORT_ID`] (`short` is then empty).
    pub(super) arena: Vec<u8>,
    /// End offset of each row's id in `arena`.
    pub(super) ends: Vec<u32>,
    /// Bytes of all ids so far, for the 4 GiB bound while they are kept in `short`.
    pub(super) id_bytes: u64,
    /// The file's size, to reserve `arena` and `ends` if they are needed.
    pub(super) size_hint: usize,
    /// The distinct classes in order of first appearance.
    pub(super) class_names: Vec<Box<[u8]>>,
    /// Class index by name.
    pub(super) class_by_name: HashMap<Box<[u8]>, u16>,
    /// Class index of each row.
    pub(super) class_of_row: Vec<u16>,
    /// Target of each row, for numbers.
    pub(super) values: Vec<f64>,
    /// Bit per row, set when public; empty without a split.
    pub(super) public_bits: Vec<u64>,
    /// Public rows.
    pub(super) public_len: usize,
    /// The last row's class: targets repeat, so this usually spares a hash lookup.
    pub(super) last_class: Option<u16>,
    /// Field splitter for lines with quotes or non-ASCII bytes.
    pub(super) fields: Fields,
}

impl<'s> Rows<'s> {
    pub(super) fn new(
        spec: &'s LabelSpec,
        size_hint: usize,
        id_col: usize,
        target_col: usize,
        width: usize,
    ) -> Self {
        // Untouched capacity costs no memory, so reserving the file size for ids is free.
        // A row takes at least 4 bytes ("i,t\n"), which bounds the row count.
        let mut rows = Self {
            spec,
            id_col,
            target_col,
            width,
            short: Vec::with_capacity(size_hint / 4),
            arena: Vec::new(),
            ends: Vec::new(),
            id_bytes: 0,
            size_hint,
            class_names: Vec::new(),
            class_by_name: HashMap::new(),
            class_of_row: Vec::new(),
            values: Vec::new(),
            public_bits: Vec::new(),
            public_len: 0,
            last_class: None,
            fields: Fields::default(),
        };
        match spec.kind {
            TargetKind::Classes => rows.class_of_row.reserve(size_hint / 4),
            TargetKind::Values => rows.values.reserve(size_hint / 4),
        }
        advise_huge_pages(&rows.short);
        advise_huge_pages(&rows.class_of_row);
        advise_huge_pages(&rows.values);
        rows
    }

    /// Adds every line of a run of whole lines; `line_no` is the number of the line before.
    pub(super) fn chunk(&mut self, chunk: &[u8], line_no: &mut u64) -> Result<(), LabelsError> {
        if !csv::is_plain(chunk) {
            return self.general_chunk(chunk, line_no);
        }
        csv::split_plain(chunk, [self.id_col, self.target_col], |line| {
            *line_no += 1;
            if line.is_blank(chunk) {
                return Ok(());
            }
            if line.fields != self.width {
                return Err(LabelsError::WrongFieldCount {
                    line: *line_no,
                    expected: self.width,
                    found: line.fields,
                });
            }
            let [id, target] = line.wanted;
            self.row(
                *line_no,
                chunk[id.0..id.1].trim_ascii(),
                chunk[target.0..target.1].trim_ascii(),
            )
        })
    }

    /// Lines that may hold quotes or non-ASCII bytes, checked and split one by one.
    fn general_chunk(&mut self, chunk: &[u8], line_no: &mut u64) -> Result<(), LabelsError> {
        let mut fields = std::mem::take(&mut self.fields);
        let result = csv::each_line(chunk, line_no, |line_no, line| {
            fields
                .split_checked(line)
                .map_err(|problem| LabelsError::Malformed {
                    line: line_no,
                    reason: problem.reason(),
                })?;
            if fields.len() != self.width {
                return Err(LabelsError::WrongFieldCount {
                    line: line_no,
                    expected: self.width,
                    found: fields.len(),
                });
            }
            self.row(
                line_no,
                fields.get(line, self.id_col),
                fields.get(line, self.target_col),
            )
        });
        self.fields = fields;
        result
    }

    /// Moves the short ids read so far to `arena` and `ends`, on the first long id.
    #[cold]
    fn intern_long(&mut self) {
        self.arena.reserve(self.size_hint);
        self.ends.reserve(self.size_hint / 4);
        advise_huge_pages(&self.arena);
        advise_huge_pages(&self.ends);
        for word in std::mem::take(&mut self.short) {
            self.arena
                .extend_from_slice(&word[..usize::from(word[SHORT_ID])]);
            self.ends.push(self.arena.len() as u32);
        }
    }

    /// Adds one row from its trimmed, unquoted id and target.
    #[inline]
    fn row(&mut self, line_no: u64, id: &[u8], target: &[u8]) -> Result<(), LabelsError> {
        if id.is_empty() {
            return Err(LabelsError::EmptyId { line: line_no });
        }
        let row = self.short.len().max(self.ends.len());
        self.id_bytes += id.len() as u64;
        if u32::try_from(self.id_bytes).is_err() {
            return Err(LabelsError::Malformed {
                line: line_no,
                reason: "ids exceed 4 GiB in total",
            });
        }
        if id.len() <= SHORT_ID && self.ends.is_empty() {
            let mut word = [0u8; 8];
            word[..id.len()].copy_from_slice(id);
            word[SHORT_ID] = id.len() as u8;
            self.short.push(word);
        } else {
            if self.ends.is_empty() {
                self.intern_long();
            }
            self.arena.extend_from_slice(id);
            self.ends.push(self.id_bytes as u32);
        }
        if let Some(split) = &self.spec.split {
            if row & 63 == 0 {
                self.public_bits.push(0);
            }
            if split.is_public(id) {
                self.public_bits[row / 64] |= 1 << (row % 64);
                self.public_len += 1;
            }
        } else {
            self.public_len += 1;
        }
        match self.spec.kind {
            TargetKind::Classes => {
                if target.is_empty() {
                    return Err(LabelsError::BadTarget {
                        line: line_no,
                        reason: "is empty",
                    });
                }
                let class = match self.last_class {
                    Some(class) if *self.class_names[usize::from(class)] == *target => class,
                    _ => {
                        // A few classes are found faster by a scan than by hashing.
                        let scanned = (self.class_names.len() <= 8)
                            .then(|| self.class_names.iter().position(|n| **n == *target))
                            .flatten()
                            .map(|c| c as u16);
                        let class =
                            match scanned.or_else(|| self.class_by_name.get(target).copied()) {
                                Some(class) => class,
                                None => {
                                    if self.class_names.len() >= MAX_CLASSES {
                                        return Err(LabelsError::TooManyClasses);
                                    }
                                    let class = self.class_names.len() as u16;
                                    self.class_names.push(target.into());
                                    self.class_by_name.insert(target.into(), class);
                                    class
                                }
                            };
                        self.last_class = Some(class);
                        class
                    }
                };
                self.class_of_row.push(class);
            }
            TargetKind::Values => {
                let value = csv::parse_f64(target).ok_or(LabelsError::BadTarget {
                    line: line_no,
                    reason: "is not a number",
                })?;
                if !value.is_finite() {
                    return Err(LabelsError::BadTarget {
                        line: line_no,
                        reason: "is not finite",
                    });
                }
                self.values.push(value);
            }
        }
        Ok(())
    }
}
