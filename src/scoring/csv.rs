//! Streaming CSV reading shared by the labels loader, the predictions parser and the
//! split-labels writer.
//!
//! Owns line framing over big buffers and splitting a line into fields as byte slices, so
//! parsing a row allocates nothing. It must never hold a whole file in memory, and never let
//! a line grow past its cap: a participant's file is hostile input.
//!
//! Dialect: comma separator, `\n` or `\r\n` line ends, RFC 4180 double quotes within a line
//! (`""` escapes a quote). A quoted field may not span lines: predictions and labels are ids
//! and numbers, and supporting multi-line fields would let one field swallow the file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use memchr::{memchr, memchr_iter, memrchr};

/// Default read buffer: big enough that syscalls and refills cost nothing per row.
pub(crate) const BUFFER_BYTES: usize = 1 << 20;

/// A problem framing a line.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The underlying read failed.
    Io(io::Error),
    /// Line `line` is longer than the reader's cap.
    TooLong { line: u64 },
}

/// Reads `\n`-terminated lines from a reader through one reusable buffer.
pub(crate) struct LineReader<R> {
    /// Where the bytes come from.
    inner: R,
    /// The buffer; `buf[start..end]` holds bytes not yet handed out.
    buf: Vec<u8>,
    /// Start of the unread bytes.
    start: usize,
    /// End of the valid bytes.
    end: usize,
    /// Bytes before this index (and after `start`) are known to hold no newline.
    scan: usize,
    /// The reader reported end of file.
    eof: bool,
    /// The buffer never grows past this, so neither can a line.
    max_line: usize,
    /// Number of the last line handed out (1-based).
    line_no: u64,
    /// Total bytes read from `inner`.
    bytes_read: u64,
}

impl<R: Read> LineReader<R> {
    /// A reader with an initial buffer of `buffer` bytes that grows up to `max_line` bytes.
    pub(crate) fn new(inner: R, buffer: usize, max_line: usize) -> Self {
        let size = buffer.min(max_line).max(64);
        Self {
            inner,
            buf: vec![0; size],
            start: 0,
            end: 0,
            scan: 0,
            eof: false,
            max_line: max_line.max(size),
            line_no: 0,
            bytes_read: 0,
        }
    }

    /// Number of the last line handed out by [`Self::next_line`].
    pub(crate) fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Total bytes read from the underlying reader so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next line's number (from 1) and bytes without its `\n` or `\r\n`, or `None` at
    /// end of input.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, LineError> {
        loop {
            let from = self.scan.max(self.start);
            if let Some(offset) = memchr(b'\n', &self.buf[from..self.end]) {
                let newline = from + offset;
                let begin = self.start;
                self.start = newline + 1;
                self.scan = self.start;
                self.line_no += 1;
                return Ok(Some((self.line_no, strip_cr(&self.buf[begin..newline]))));
            }
            if self.eof {
                if self.start < self.end {
                    let begin = self.start;
                    self.start = self.end;
                    self.line_no += 1;
                    return Ok(Some((self.line_no, strip_cr(&self.buf[begin..self.end]))));
                }
                return Ok(None);
            }
            self.scan = self.end;
            self.refill()?;
        }
    }

    /// The next run of whole lines, with their `\n` (the last line of the input may lack
    /// it), or `None` at end of input. Lines are framed, capped and counted exactly as by
    /// [`Self::next_line`]; the caller splits and counts them, and says how many lines it has
    /// been handed so far so a too-long line is reported with its number.
    pub(crate) fn next_chunk(&mut self, lines_before: u64) -> Result<Option<&[u8]>, LineError> {
        self.line_no = lines_before;
        loop {
            let from = self.scan.max(self.start);
            if let Some(offset) = memrchr(b'\n', &self.buf[from..self.end]) {
                let begin = self.start;
                self.start = from + offset + 1;
                self.scan = self.start;
                return Ok(Some(&self.buf[begin..self.start]));
            }
            if self.eof {
                if self.start < self.end {
                    let begin = self.start;
                    self.start = self.end;
                    return Ok(Some(&self.buf[begin..self.end]));
                }
                return Ok(None);
            }
            self.scan = self.end;
            self.refill()?;
        }
    }

    /// Moves the partial line to the front, grows the buffer if the line fills it, and reads.
    fn refill(&mut self) -> Result<(), LineError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scan -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= self.max_line {
                return Err(LineError::TooLong {
                    line: self.line_no + 1,
                });
            }
            let grown = (self.buf.len() * 2).min(self.max_line);
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
                    self.bytes_read += n as u64;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }
}

/// Reads `file` from `pos` up to `end` with positioned reads, so several readers can share one
/// descriptor (one per thread, each over its own range).
pub(crate) struct RangeReader<'a> {
    /// The file.
    pub(crate) file: &'a File,
    /// Offset of the next byte to read.
    pub(crate) pos: u64,
    /// Offset where reading stops (`u64::MAX`: at end of file).
    pub(crate) end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Parses a trimmed CSV field as `str::parse::<f64>` does, with the same result bit for bit.
///
/// Plain decimals (`-12.3456`, at most 19 digits, at most 22 after the point) take Clinger's
/// fast path: the digits as an integer below 2^53 and a power of ten up to 1e22 are both exact
/// doubles, so one IEEE division is the correctly rounded value, which is what std computes.
/// Everything else (exponents, `inf`, long mantissas) goes to std.
#[inline]
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // At most 19 digits (with or without a point): the mantissa stays below 10^19 < 2^64.
    if !digits.is_empty() && digits.len() <= 19 {
        let mut mantissa = 0u64;
        let mut count = 0usize;
        let mut scale = 0usize;
        let mut point = false;
        let mut plain = true;
        for &b in digits {
            match b {
                b'0'..=b'9' => {
                    mantissa = mantissa * 10 + u64::from(b - b'0');
                    count += 1;
                    scale += usize::from(point);
                }
                b'.' if !point => point = true,
                _ => {
                    plain = false;
                    break;
                }
            }
        }
        if plain && count > 0 && mantissa <= 1 << 53 && scale < POW10.len() {
            let value = mantissa as f64 / POW10[scale];
            return Some(if negative { -value } else { value });
        }
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Strips a UTF-8 byte order mark, which spreadsheet tools put before the header.
pub(crate) fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
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

/// Finds a column by name in a split header line.
pub(crate) fn find_column(fields: &Fields, header: &[u8], name: &str) -> Option<usize> {
    (0..fields.len()).find(|&i| fields.get(header, i) == name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], buffer: usize, max: usize) -> Result<Vec<Vec<u8>>, LineError> {
        let mut reader = LineReader::new(input, buffer, max);
        let mut out = Vec::new();
        while let Some((_, line)) = reader.next_line()? {
            out.push(line.to_vec());
        }
        Ok(out)
    }

    fn fields(line: &[u8]) -> Result<Vec<String>, QuoteError> {
        let mut f = Fields::default();
        f.split(line)?;
        Ok((0..f.len())
            .map(|i| String::from_utf8_lossy(f.get(line, i)).into_owned())
            .collect())
    }

    #[test]
    fn lines_are_framed_across_buffer_refills_with_and_without_a_final_newline() {
        let input = b"id,p\r\n1,0.5\n22,0.25\n333,1";
        let got = lines(input, 64, 1024).unwrap();
        assert_eq!(
            got,
            vec![
                b"id,p".to_vec(),
                b"1,0.5".to_vec(),
                b"22,0.25".to_vec(),
                b"333,1".to_vec()
            ]
        );
    }

    #[test]
    fn a_line_longer_than_the_cap_is_an_error_naming_its_number() {
        let mut input = b"a\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 500));
        match lines(&input, 64, 128) {
            Err(LineError::TooLong { line }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
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
    fn chunks_hold_whole_lines_and_cap_a_long_line_with_its_number() {
        let input = b"id,p\n1,0.5\n22,0.25\n333,1";
        let mut reader = LineReader::new(&input[..], 64, 1024);
        let mut all = Vec::new();
        while let Some(chunk) = reader.next_chunk(0).unwrap() {
            all.extend_from_slice(chunk);
        }
        assert_eq!(all, input);
        let mut input = b"a\nb\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 500));
        let mut reader = LineReader::new(&input[..], 64, 128);
        assert_eq!(reader.next_chunk(0).unwrap().unwrap(), b"a\nb\n");
        match reader.next_chunk(2) {
            Err(LineError::TooLong { line }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_mantissas_are_left_to_std() {
        for text in [
            "99999999999999999999",
            "18446744073709551617",
            "9007199254740993",
            "0.30000000000000004441",
        ] {
            assert_eq!(parse_f64(text.as_bytes()), text.parse().ok(), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn numbers_parse_bit_for_bit_like_std(
            text in "[-+]?[0-9]{0,21}(\\.[0-9]{0,24})?([eE][-+]?[0-9]{1,3})?|inf|NaN|[0-9.+-]{0,6}",
            value in proptest::num::f64::ANY,
            decimals in 0usize..20,
        ) {
            let std: Option<f64> = text.parse().ok();
            proptest::prop_assert_eq!(parse_f64(text.as_bytes()).map(f64::to_bits), std.map(f64::to_bits));
            for text in [format!("{value}"), format!("{value:.decimals$}")] {
                let std: Option<f64> = text.parse().ok();
                proptest::prop_assert_eq!(parse_f64(text.as_bytes()).map(f64::to_bits), std.map(f64::to_bits));
            }
        }
    }

    #[test]
    fn an_unclosed_or_trailing_quote_is_an_error() {
        assert_eq!(fields(br#""abc,1"#), Err(QuoteError));
        assert_eq!(fields(br#""abc"x,1"#), Err(QuoteError));
    }
}
