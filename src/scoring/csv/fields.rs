//! Splitting a line of CSV into fields, as byte ranges: the one fast splitter for plain
//! lines, and the careful one for lines with quotes or non-ASCII bytes.
//!
//! Owns [`split_plain`], the hot loop of loading labels and of scoring predictions alike, and
//! [`Fields`], which undoes quotes. Neither allocates per row. They must never accept what the
//! other would refuse: a plain line splits the same way through both.

use memchr::{memchr, memchr_iter, memchr2_iter};

/// What makes a line unreadable as CSV, whatever its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineProblem {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// A quoted field is not closed, or text follows its closing quote.
    UnbalancedQuotes,
}

impl LineProblem {
    /// The problem in a few words, for a message.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            LineProblem::InvalidUtf8 => "invalid UTF-8",
            LineProblem::UnbalancedQuotes => "unbalanced quotes",
        }
    }
}

/// Whether [`split_plain`] can take every line of `chunk`: ASCII without a quote, so the
/// fields are exactly the bytes between commas and no line needs a UTF-8 check.
#[inline]
pub(crate) fn is_plain(chunk: &[u8]) -> bool {
    chunk.is_ascii() && memchr(b'"', chunk).is_none()
}

/// A line of a plain chunk as [`split_plain`] found it, in bounds within the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlainLine {
    /// Where the line starts.
    pub(crate) start: usize,
    /// Where it ends, before its `\n`. A `\r` before the `\n` stays in the last field, whose
    /// surrounding whitespace every caller trims, as the line reader strips it from a line.
    pub(crate) end: usize,
    /// How many fields the line has.
    pub(crate) fields: usize,
    /// The bounds of the two fields asked for, untrimmed. Only meaningful when the line has
    /// as many fields as the header, which every caller checks first.
    pub(crate) wanted: [(usize, usize); 2],
}

impl PlainLine {
    /// Whether the line is blank: one field of whitespace. Blank lines are skipped anywhere.
    #[inline]
    pub(crate) fn is_blank(&self, chunk: &[u8]) -> bool {
        self.fields == 1 && chunk[self.start..self.end].trim_ascii().is_empty()
    }
}

/// Records `span` as the bounds of field number `field` if it is one of the `wanted`.
#[inline(always)]
fn note_wanted(
    found: &mut [(usize, usize); 2],
    wanted: [usize; 2],
    field: usize,
    span: (usize, usize),
) {
    if field == wanted[0] {
        found[0] = span;
    }
    if field == wanted[1] {
        found[1] = span;
    }
}

/// The fast splitter, for a [plain](is_plain) run of whole lines: one vectorised scan finds
/// every comma and newline, and `each` is called with every line in order (its bounds, its
/// field count, and the bounds of fields `wanted[0]` and `wanted[1]`) until it returns an
/// error. The input's last line may lack its `\n`.
#[inline]
pub(crate) fn split_plain<E>(
    chunk: &[u8],
    wanted: [usize; 2],
    mut each: impl FnMut(PlainLine) -> Result<(), E>,
) -> Result<(), E> {
    let (mut start, mut field_start, mut field) = (0, 0, 0);
    let mut found = [(0, 0); 2];
    for pos in memchr2_iter(b',', b'\n', chunk) {
        note_wanted(&mut found, wanted, field, (field_start, pos));
        if chunk[pos] == b',' {
            field += 1;
            field_start = pos + 1;
            continue;
        }
        each(PlainLine {
            start,
            end: pos,
            fields: field + 1,
            wanted: found,
        })?;
        start = pos + 1;
        field_start = start;
        field = 0;
    }
    // A last line without its newline ends where the chunk does.
    if start < chunk.len() {
        note_wanted(&mut found, wanted, field, (field_start, chunk.len()));
        each(PlainLine {
            start,
            end: chunk.len(),
            fields: field + 1,
            wanted: found,
        })?;
    }
    Ok(())
}

/// A quoted field was not closed, or text followed its closing quote.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct QuoteError;

/// The fields of one line, as ranges into the line (or into a scratch copy when quotes had
/// to be undone). Reused from row to row so splitting allocates only while warming up.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    /// Start and end of each field, in the line or in `scratch`.
    ranges: Vec<(usize, usize)>,
    /// Unquoted copies of the fields, used only for lines that contain a quote.
    scratch: Vec<u8>,
    /// Whether `ranges` point into `scratch` rather than the line.
    in_scratch: bool,
}

impl Fields {
    /// Splits `line`; afterwards [`Self::get`] must be called with the same line.
    pub(crate) fn split(&mut self, line: &[u8]) -> Result<(), QuoteError> {
        self.ranges.clear();
        if memchr(b'"', line).is_none() {
            self.in_scratch = false;
            let mut start = 0;
            for comma in memchr_iter(b',', line) {
                self.ranges.push((start, comma));
                start = comma + 1;
            }
            self.ranges.push((start, line.len()));
            return Ok(());
        }
        self.in_scratch = true;
        self.scratch.clear();
        let len = line.len();
        let mut i = 0;
        loop {
            let mut j = i;
            while j < len && (line[j] == b' ' || line[j] == b'\t') {
                j += 1;
            }
            if j < len && line[j] == b'"' {
                let begin = self.scratch.len();
                j += 1;
                loop {
                    let Some(offset) = memchr(b'"', &line[j..]) else {
                        return Err(QuoteError);
                    };
                    self.scratch.extend_from_slice(&line[j..j + offset]);
                    j += offset + 1;
                    if j < len && line[j] == b'"' {
                        self.scratch.push(b'"');
                        j += 1;
                    } else {
                        break;
                    }
                }
                self.ranges.push((begin, self.scratch.len()));
                while j < len && (line[j] == b' ' || line[j] == b'\t') {
                    j += 1;
                }
                if j == len {
                    return Ok(());
                }
                if line[j] != b',' {
                    return Err(QuoteError);
                }
                i = j + 1;
            } else {
                let end = memchr(b',', &line[i..]).map_or(len, |o| i + o);
                let begin = self.scratch.len();
                self.scratch.extend_from_slice(&line[i..end]);
                self.ranges.push((begin, self.scratch.len()));
                if end == len {
                    return Ok(());
                }
                i = end + 1;
            }
        }
    }

    /// Checks that `line` is UTF-8 and splits it; afterwards [`Self::get`] must be called with
    /// the same line. For lines that may hold quotes or non-ASCII bytes (headers, and the
    /// lines [`split_plain`] cannot take).
    pub(crate) fn split_checked(&mut self, line: &[u8]) -> Result<(), LineProblem> {
        if std::str::from_utf8(line).is_err() {
            return Err(LineProblem::InvalidUtf8);
        }
        self.split(line)
            .map_err(|QuoteError| LineProblem::UnbalancedQuotes)
    }

    /// How many fields the last split line had.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Field `i` of `line`, unquoted and with surrounding ASCII whitespace trimmed.
    #[inline]
    pub(crate) fn get<'a>(&'a self, line: &'a [u8], i: usize) -> &'a [u8] {
        let (start, end) = self.ranges[i];
        let base = if self.in_scratch {
            &self.scratch[..]
        } else {
            line
        };
        base[start..end].trim_ascii()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &[u8]) -> Result<Vec<String>, QuoteError> {
        let mut f = Fields::default();
        f.split(line)?;
        Ok((0..f.len())
            .map(|i| String::from_utf8_lossy(f.get(line, i)).into_owned())
            .collect())
    }

    #[test]
    fn quoted_fields_are_unquoted_and_trimmed() {
        assert_eq!(fields(b" a , b,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            fields(br#""a,b", "say ""hi""" ,c"#).unwrap(),
            ["a,b", r#"say "hi""#, "c"]
        );
        assert_eq!(fields(br#""x","#).unwrap(), ["x", ""]);
        assert_eq!(fields(b"").unwrap(), [""]);
    }

    #[test]
    fn an_unclosed_or_trailing_quote_is_an_error() {
        assert_eq!(fields(br#""abc,1"#), Err(QuoteError));
        assert_eq!(fields(br#""abc"x,1"#), Err(QuoteError));
    }

    /// Every line `split_plain` reports, as (line, field count, first wanted, second wanted).
    fn plain(chunk: &[u8], wanted: [usize; 2]) -> Vec<(String, usize, String, String)> {
        let text = |(a, b): (usize, usize)| String::from_utf8_lossy(&chunk[a..b]).into_owned();
        let mut out = Vec::new();
        split_plain(chunk, wanted, |l| {
            out.push((
                text((l.start, l.end)),
                l.fields,
                text(l.wanted[0]),
                text(l.wanted[1]),
            ));
            Ok::<(), ()>(())
        })
        .unwrap();
        out
    }

    #[test]
    fn the_plain_splitter_finds_each_line_and_the_two_fields_asked_for() {
        let got = plain(b"x,a,1\r\ny,b,22\n\nz,c,333", [1, 2]);
        let line = |l: &str, n, a: &str, b: &str| (l.to_owned(), n, a.to_owned(), b.to_owned());
        assert_eq!(got[0], line("x,a,1\r", 3, "a", "1\r"));
        assert_eq!(got[1], line("y,b,22", 3, "b", "22"));
        assert_eq!((got[2].0.as_str(), got[2].1), ("", 1));
        assert_eq!(got[3], line("z,c,333", 3, "c", "333"));
        assert_eq!(got.len(), 4);
        assert!(plain(b"", [0, 1]).is_empty());
    }

    #[test]
    fn a_plain_line_splits_as_the_careful_splitter_splits_it() {
        for line in [&b"a,b,c"[..], b" a , b ,c ", b",,", b"single", b" "] {
            let mut fields = Fields::default();
            fields.split_checked(line).unwrap();
            let got = plain(line, [0, fields.len() - 1]);
            let (_, count, first, last) = &got[0];
            assert_eq!(*count, fields.len());
            assert_eq!(first.trim().as_bytes(), fields.get(line, 0));
            assert_eq!(last.trim().as_bytes(), fields.get(line, count - 1));
        }
    }

    #[test]
    fn the_plain_splitter_stops_at_the_first_error() {
        let mut seen = 0;
        let result = split_plain(b"a\nb\nc\n", [0, 0], |_| {
            seen += 1;
            if seen == 2 { Err(seen) } else { Ok(()) }
        });
        assert_eq!((result, seen), (Err(2), 2));
    }

    #[test]
    fn a_line_that_is_not_utf8_or_has_unbalanced_quotes_is_named() {
        let mut fields = Fields::default();
        assert_eq!(
            fields.split_checked(b"a,\xFF"),
            Err(LineProblem::InvalidUtf8)
        );
        assert_eq!(
            fields.split_checked(b"\"a,b"),
            Err(LineProblem::UnbalancedQuotes)
        );
        assert_eq!(LineProblem::InvalidUtf8.reason(), "invalid UTF-8");
    }
}
