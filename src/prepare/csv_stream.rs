//! Streaming CSV records for the preparation check and the pseudonymiser.
//!
//! Owns framing records over one reusable buffer: RFC 4180 double quotes (`""` escapes a
//! quote) including quoted fields that span lines, `\n` or `\r\n` line ends, and a chosen
//! delimiter. Unlike the scorer's
//! reader (`scoring::csv`), a quoted newline is allowed: organisers' inputs hold free text.
//!
//! It must never hold more than one read buffer plus one record (capped at
//! [`MAX_RECORD_BYTES`]), and never put a field's content into an error: these files are
//! private, so errors carry record and line numbers only.

use std::io::{self, Read};

use memchr::memchr;

/// Initial read buffer: large enough that syscalls cost nothing per row.
pub const BUFFER_BYTES: usize = 1 << 20;

/// The longest record accepted; a longer one is an error, never an allocation.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// A file that cannot be read as CSV. Never quotes the file's content.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The underlying read failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// A record is longer than the cap.
    #[error("record {record} (line {line}) is longer than {max} bytes")]
    TooLong {
        /// 1-based record number, the header being record 1.
        record: u64,
        /// 1-based line where the record starts.
        line: u64,
        /// The cap.
        max: usize,
    },
    /// A quote opened and the file ended before it closed.
    #[error("record {record} (line {line}) opens a quote that never closes")]
    Unclosed {
        /// 1-based record number.
        record: u64,
        /// 1-based line where the record starts.
        line: u64,
    },
}

/// The high bit of each byte of `w` that equals `b`, exactly (no false positives).
#[inline]
fn eq_bytes(w: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (0x0101_0101_0101_0101 * u64::from(b));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// What the fast path made of a line.
enum Step {
    /// A record is ready.
    Record,
    /// A blank line was skipped.
    Blank,
    /// The line has a quote: the slow path parses it.
    Quoted,
    /// No line end in the buffer.
    NeedMore,
}

/// Reads CSV records one at a time through one reusable buffer.
pub struct CsvReader<R> {
    /// Where the bytes come from.
    inner: R,
    /// The buffer; `buf[start..end]` holds bytes not yet consumed.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    start: usize,
    /// End of the valid bytes.
    end: usize,
    /// Bytes in `buf[start..scan]` are known to hold no newline (fast path only).
    scan: usize,
    /// The reader reported end of file.
    eof: bool,
    /// The field separator.
    delimiter: u8,
    /// The cap on one record, so on the buffer.
    max_record: usize,
    /// Field bounds of the current record, in `buf` or in `scratch`.
    bounds: Vec<(usize, usize)>,
    /// Unquoted copies of the fields of a record that had a quote.
    scratch: Vec<u8>,
    /// Whether `bounds` point into `scratch`.
    in_scratch: bool,
    /// Offset in `buf` of the current record, for the fast path.
    record_at: usize,
    /// Newlines consumed so far.
    lines: u64,
    /// Line where the current record starts (1-based).
    record_line: u64,
    /// Records handed out so far, the header included.
    records: u64,
    /// Records that spanned more than one line.
    multiline: u64,
    /// Blank lines skipped.
    blank: u64,
    /// Bytes read from `inner`.
    bytes: u64,
    /// Length of the current record's line in `buf`, for the fast path.
    record_len: usize,
}

/// One record: its fields, unquoted.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The record's bytes: the line as read, or its unquoted fields back to back.
    line: &'a [u8],
    /// The bytes the bounds point into.
    base: &'a [u8],
    /// Start and end of each field.
    bounds: &'a [(usize, usize)],
}

impl<'a> Record<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Whether the record has no field (never true for a record handed out).
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// All the record's bytes (for encoding checks): the line as read, or, for a record
    /// with quotes, its unquoted fields back to back.
    pub fn line(&self) -> &'a [u8] {
        self.line
    }

    /// The fields in order, unquoted and trimmed.
    pub fn fields(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let base = self.base;
        self.bounds
            .iter()
            .map(move |&(s, e)| base[s..e].trim_ascii())
    }

    /// Field `i`, unquoted, with surrounding ASCII whitespace trimmed; empty when absent.
    pub fn get(&self, i: usize) -> &'a [u8] {
        self.raw(i).trim_ascii()
    }

    /// Field `i`, unquoted and untrimmed; empty when absent.
    pub fn raw(&self, i: usize) -> &'a [u8] {
        match self.bounds.get(i) {
            Some(&(s, e)) => &self.base[s..e],
            None => &[],
        }
    }
}

impl<R: Read> CsvReader<R> {
    /// A reader splitting on `delimiter`.
    pub fn new(inner: R, delimiter: u8) -> Self {
        Self::with_limits(inner, delimiter, BUFFER_BYTES, MAX_RECORD_BYTES)
    }

    /// As [`Self::new`] with an explicit initial buffer and record cap (tests use small ones).
    pub fn with_limits(inner: R, delimiter: u8, buffer: usize, max_record: usize) -> Self {
        let size = buffer.min(max_record).max(64);
        Self {
            inner,
            buf: vec![0; size],
            start: 0,
            end: 0,
            scan: 0,
            eof: false,
            delimiter,
            max_record: max_record.max(size),
            bounds: Vec::new(),
            scratch: Vec::new(),
            in_scratch: false,
            record_at: 0,
            lines: 0,
            record_line: 0,
            records: 0,
            multiline: 0,
            blank: 0,
            bytes: 0,
            record_len: 0,
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Bytes read from the file so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Records handed out so far, the header included.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records that spanned more than one line (a quoted newline).
    pub fn multiline_records(&self) -> u64 {
        self.multiline
    }

    /// Line where the last record handed out starts.
    pub fn record_line(&self) -> u64 {
        self.record_line
    }

    /// The next record, skipping blank lines, or `None` at end of file.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CsvError> {
        loop {
            let from = self.scan.max(self.start);
            let step = match memchr(b'\n', &self.buf[from..self.end]) {
                Some(o) => self.split_plain(from + o),
                None => Step::NeedMore,
            };
            match step {
                Step::Record => return Ok(Some(self.current())),
                Step::Blank => {}
                Step::Quoted | Step::NeedMore => match self.slow(step)? {
                    Some(true) => return Ok(Some(self.current())),
                    Some(false) => {}
                    None => return Ok(None),
                },
            }
        }
    }

    /// Splits the line from `start` to `line_end` (a `\n` or the end of the input) if it has
    /// no quote; this is the path almost every row takes, so it stays small and inlined.
    #[inline]
    fn split_plain(&mut self, line_end: usize) -> Step {
        let begin = self.start;
        let mut stop = line_end;
        if stop > begin && self.buf[stop - 1] == b'\r' {
            stop -= 1;
        }
        self.bounds.clear();
        let mut field = 0;
        // Fields are short, so a search restarted per field costs more than it saves; this
        // looks at eight bytes at a time for the delimiter and quotes.
        let d = self.delimiter;
        let line = &self.buf[begin..stop];
        let mut words = line.chunks_exact(8);
        let mut at = 0;
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().expect("chunks_exact yields 8 bytes"));
            let quotes = eq_bytes(w, b'"');
            if quotes != 0 {
                return Step::Quoted;
            }
            let mut m = eq_bytes(w, d);
            while m != 0 {
                let i = at + (m.trailing_zeros() / 8) as usize;
                self.bounds.push((field, i));
                field = i + 1;
                m &= m - 1;
            }
            at += 8;
        }
        for (k, &b) in words.remainder().iter().enumerate() {
            if b == d {
                self.bounds.push((field, at + k));
                field = at + k + 1;
            } else if b == b'"' {
                return Step::Quoted;
            }
        }
        self.start = (line_end + 1).min(self.end);
        self.scan = self.start;
        self.lines += 1;
        if stop == begin {
            self.blank += 1;
            return Step::Blank;
        }
        self.bounds.push((field, stop - begin));
        self.records += 1;
        self.record_line = self.lines;
        self.in_scratch = false;
        self.record_at = begin;
        self.record_len = stop - begin;
        Step::Record
    }

    /// Everything but a plain line: a record with quotes, a refill, the end of the input.
    /// `Some(true)`: a record is ready; `Some(false)`: look again; `None`: the end.
    #[inline(never)]
    fn slow(&mut self, step: Step) -> Result<Option<bool>, CsvError> {
        if let Step::Quoted = step {
            return self.quoted_record().map(Some);
        }
        if !self.eof {
            self.scan = self.end;
            self.refill()?;
            return Ok(Some(false));
        }
        if self.start == self.end {
            return Ok(None);
        }
        match self.split_plain(self.end) {
            Step::Record => Ok(Some(true)),
            Step::Blank => Ok(Some(false)),
            _ => self.quoted_record().map(Some),
        }
    }

    fn current(&self) -> Record<'_> {
        let (base, line) = if self.in_scratch {
            (&self.scratch[..], &self.scratch[..])
        } else {
            let base = &self.buf[self.record_at..];
            (base, &base[..self.record_len])
        };
        Record {
            line,
            base,
            bounds: &self.bounds,
        }
    }

    /// Parses a record with quotes from `start`, reading more as needed. Returns false when
    /// it needed more bytes and refilled (the caller loops), true when the record is ready.
    fn quoted_record(&mut self) -> Result<bool, CsvError> {
        #[derive(PartialEq)]
        enum State {
            FieldStart,
            Unquoted,
            Quoted,
            QuoteInQuoted,
        }
        self.scratch.clear();
        self.bounds.clear();
        let mut state = State::FieldStart;
        let mut field = 0;
        let mut newlines = 0u64;
        let mut i = self.start;
        let d = self.delimiter;
        while i < self.end {
            let b = self.buf[i];
            match state {
                State::FieldStart | State::Unquoted | State::QuoteInQuoted if b == b'\n' => {
                    break;
                }
                State::FieldStart | State::Unquoted | State::QuoteInQuoted if b == d => {
                    self.bounds.push((field, self.scratch.len()));
                    field = self.scratch.len();
                    state = State::FieldStart;
                }
                State::FieldStart if b == b'"' => state = State::Quoted,
                State::QuoteInQuoted if b == b'"' => {
                    self.scratch.push(b'"');
                    state = State::Quoted;
                }
                State::Quoted if b == b'"' => state = State::QuoteInQuoted,
                State::Quoted => {
                    if b == b'\n' {
                        newlines += 1;
                    }
                    self.scratch.push(b);
                }
                _ => {
                    self.scratch.push(b);
                    state = State::Unquoted;
                }
            }
            i += 1;
        }
        if i == self.end && !self.eof {
            // The record runs past the buffer: read more and parse it again from its start.
            self.scan = self.start;
            self.refill()?;
            return Ok(false);
        }
        if state == State::Quoted {
            return Err(CsvError::Unclosed {
                record: self.records + 1,
                line: self.lines + 1,
            });
        }
        if state == State::Unquoted && self.scratch.last() == Some(&b'\r') {
            self.scratch.pop();
        }
        self.bounds.push((field, self.scratch.len()));
        self.records += 1;
        self.record_line = self.lines + 1;
        let consumed_newline = i < self.end;
        self.lines += newlines + u64::from(consumed_newline);
        if newlines > 0 {
            self.multiline += 1;
        }
        self.start = if consumed_newline { i + 1 } else { i };
        self.scan = self.start;
        self.in_scratch = true;
        Ok(true)
    }

    /// Moves unconsumed bytes to the front, grows the buffer if a record fills it, reads.
    fn refill(&mut self) -> Result<(), CsvError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scan = self.scan.saturating_sub(self.start);
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= self.max_record {
                return Err(CsvError::TooLong {
                    record: self.records + 1,
                    line: self.lines + 1,
                    max: self.max_record,
                });
            }
            let grown = (self.buf.len() * 2).min(self.max_record);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    self.bytes += n as u64;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl CsvReader<io::Empty> {
    /// The records of `bytes`, which must hold whole records: parsed in place, no copy.
    pub fn from_vec(bytes: Vec<u8>, delimiter: u8) -> Self {
        let end = bytes.len();
        let mut r = CsvReader::with_limits(io::empty(), delimiter, 64, MAX_RECORD_BYTES.max(end));
        r.buf = bytes;
        r.end = end;
        r.eof = true;
        r
    }
}

/// Strips a UTF-8 byte order mark, which spreadsheet tools put before the header.
pub fn strip_bom(field: &[u8]) -> &[u8] {
    field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
}

/// The separator a header line uses: the most frequent of `,`, `;` and tab outside quotes
/// (a comma when none appears, or on a tie with a comma).
pub fn sniff_delimiter(first_line: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in first_line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], i == 0)).unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        [b',', b';', b'\t'][best]
    }
}

/// Writes one CSV field, quoting it when it holds the delimiter, a quote, a line end, or
/// surrounding whitespace that a reader would trim.
pub fn write_field(out: &mut Vec<u8>, field: &[u8], delimiter: u8) {
    let needs = field
        .iter()
        .any(|&b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r')
        || field.first().is_some_and(u8::is_ascii_whitespace)
        || field.last().is_some_and(u8::is_ascii_whitespace);
    if !needs {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], buffer: usize, max: usize) -> Result<Vec<Vec<String>>, CsvError> {
        let mut r = CsvReader::with_limits(input, b',', buffer, max);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(
                (0..rec.len())
                    .map(|i| String::from_utf8_lossy(rec.get(i)).into_owned())
                    .collect(),
            );
        }
        Ok(out)
    }

    #[test]
    fn records_are_framed_across_refills_with_quotes_crlf_and_blank_lines() {
        let input =
            b"id,text\r\n1,plain\r\n\r\n2,\"a, \"\"quoted\"\"\nsecond line\"\n3, x \n4,last";
        for buffer in [64, 65, 100, 1 << 12] {
            let rows = all(input, buffer, 1 << 12).unwrap();
            assert_eq!(rows.len(), 5, "buffer {buffer}");
            assert_eq!(rows[2], vec!["2", "a, \"quoted\"\nsecond line"]);
            assert_eq!(rows[3], vec!["3", "x"]);
            assert_eq!(rows[4], vec!["4", "last"]);
        }
    }

    #[test]
    fn a_record_longer_than_the_cap_is_an_error_with_its_number_only() {
        let mut input = b"a,b\n1,".to_vec();
        input.extend(std::iter::repeat_n(b'z', 500));
        input.push(b'\n');
        let err = all(&input, 64, 128).unwrap_err();
        assert!(
            matches!(
                err,
                CsvError::TooLong {
                    record: 2,
                    line: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.to_string().contains("zzz"));
    }

    #[test]
    fn an_unclosed_quote_is_an_error_naming_where_it_starts() {
        let err = all(b"a,b\n1,2\n3,\"secret\n4,5\n", 64, 1024).unwrap_err();
        assert!(
            matches!(err, CsvError::Unclosed { record: 3, line: 3 }),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn eight_bytes_at_a_time_finds_exactly_the_matching_bytes() {
        for b in [b',', b';', b'"', 0u8, 0x80, 0xff] {
            for pattern in 0u32..256 {
                let bytes: [u8; 8] =
                    std::array::from_fn(|i| if pattern >> i & 1 == 1 { b } else { b ^ 1 });
                let m = eq_bytes(u64::from_le_bytes(bytes), b);
                let expected: u64 = (0..8)
                    .filter(|i| pattern >> i & 1 == 1)
                    .map(|i| 0x80 << (8 * i))
                    .sum();
                assert_eq!(m, expected, "{b} {pattern:08b}");
            }
        }
    }

    #[test]
    fn long_and_short_lines_split_alike() {
        let line = "a,bb,,ccc,dddd,eeeee,ffffff,ggggggg,hhhhhhhh,i,,\n";
        let mut r = CsvReader::new(line.as_bytes(), b',');
        let rec = r.next_record().unwrap().unwrap();
        let fields: Vec<&[u8]> = rec.fields().collect();
        let expected: Vec<&[u8]> = line.trim_end().split(',').map(str::as_bytes).collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn the_delimiter_is_sniffed_from_the_header() {
        assert_eq!(sniff_delimiter(b"a;b;c"), b';');
        assert_eq!(sniff_delimiter(b"a\tb"), b'\t');
        assert_eq!(sniff_delimiter(b"\"a;b\",c"), b',');
        assert_eq!(sniff_delimiter(b"single"), b',');
    }

    #[test]
    fn written_fields_read_back_identically() {
        for field in ["plain", "a,b", "say \"hi\"", "two\nlines", " padded ", ""] {
            let mut line = b"x,".to_vec();
            write_field(&mut line, field.as_bytes(), b',');
            line.push(b'\n');
            let mut r = CsvReader::new(&line[..], b',');
            let rec = r.next_record().unwrap().unwrap();
            assert_eq!(rec.raw(1), field.as_bytes(), "{field:?}");
        }
    }
}
