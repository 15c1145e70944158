//! Streaming CSV reading shared by the labels loader, the predictions parser, the split-labels
//! writer and the `holdout score` command.
//!
//! Owns line framing over big buffers, the one header reader, and (in `fields`) splitting a
//! line into fields as byte slices, so parsing a row allocates nothing; `number` parses a field
//! as a float. It must never hold a whole file in memory, and never let a line grow past its
//! cap: a participant's file is hostile input.
//!
//! Dialect: comma separator, `\n` or `\r\n` line ends, RFC 4180 double quotes within a line
//! (`""` escapes a quote). A quoted field may not span lines: predictions and labels are ids
//! and numbers, and supporting multi-line fields would let one field swallow the file. A
//! file's header is its first non-blank line, and a UTF-8 byte order mark before it is ignored.

mod fields;
mod number;

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use memchr::{memchr, memrchr};

pub(crate) use fields::{Fields, LineProblem, PlainLine, is_plain, split_plain};
pub(crate) use number::parse_f64;

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

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Strips a UTF-8 byte order mark, which spreadsheet tools put before the header.
pub(crate) fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// Calls `each` with every non-blank line of a run of whole lines (see
/// [`LineReader::next_chunk`]) and its number, until it returns an error: the way through the
/// lines [`split_plain`] cannot take, to be checked and split one by one. Lines are given
/// without their `\n` or `\r\n`, and numbered on from `line_no` (the number of the line
/// before), which ends as the number of the last line read.
pub(crate) fn each_line<E>(
    chunk: &[u8],
    line_no: &mut u64,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    for raw in chunk.split_inclusive(|&b| b == b'\n') {
        *line_no += 1;
        let line = strip_cr(raw.strip_suffix(b"\n").unwrap_or(raw));
        if !line.trim_ascii().is_empty() {
            each(*line_no, line)?;
        }
    }
    Ok(())
}

/// The header of a CSV file: its first non-blank line, split into column names.
#[derive(Debug)]
pub(crate) struct Header {
    /// The line's number (from 1).
    pub(crate) line_no: u64,
    /// The line as written, without a byte order mark or its line end. A copy: a header is
    /// read once, and the reader's buffer moves on.
    text: Vec<u8>,
    /// The line split into fields.
    fields: Fields,
}

impl Header {
    /// The line as written, without a byte order mark or its line end.
    pub(crate) fn text(&self) -> &[u8] {
        &self.text
    }

    /// How many columns the header names.
    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    /// Column `i`'s name, unquoted and trimmed.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        self.fields.get(&self.text, i)
    }

    /// The index of the first column called `name`.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        (0..self.len()).find(|&i| self.get(i) == name.as_bytes())
    }
}

/// Why a file has no usable header.
#[derive(Debug)]
pub(crate) enum HeaderError {
    /// Nothing but blank lines (or nothing at all).
    Empty,
    /// Reading or framing failed before a header was found.
    Line(LineError),
    /// The header line is not valid UTF-8, or its quotes are unbalanced.
    Bad {
        /// The header's line number.
        line: u64,
        /// What is wrong with it.
        problem: LineProblem,
    },
}

/// Reads the header: the first non-blank line, without a byte order mark, checked (UTF-8,
/// balanced quotes) and split. The reader is left at the line after it.
pub(crate) fn read_header<R: Read>(reader: &mut LineReader<R>) -> Result<Header, HeaderError> {
    let mut fields = Fields::default();
    loop {
        let Some((line_no, line)) = reader.next_line().map_err(HeaderError::Line)? else {
            return Err(HeaderError::Empty);
        };
        let line = if line_no == 1 { strip_bom(line) } else { line };
        if line.trim_ascii().is_empty() {
            continue;
        }
        fields
            .split_checked(line)
            .map_err(|problem| HeaderError::Bad {
                line: line_no,
                problem,
            })?;
        return Ok(Header {
            line_no,
            text: line.to_vec(),
            fields,
        });
    }
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
    fn each_line_skips_blank_lines_and_numbers_the_others_on() {
        let mut got = Vec::new();
        let mut line_no = 10;
        each_line(b"a,1\r\n \nb,2\nc", &mut line_no, |n, line| {
            got.push((n, line.to_vec()));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(
            got,
            [
                (11, b"a,1".to_vec()),
                (13, b"b,2".to_vec()),
                (14, b"c".to_vec())
            ]
        );
        assert_eq!(line_no, 14);
    }

    #[test]
    fn the_header_is_the_first_non_blank_line_without_its_byte_order_mark() {
        let input = b"\xEF\xBB\xBFid, \"p\" ,x\r\n1,0.5\n";
        let mut reader = LineReader::new(&input[..], 64, 1024);
        let header = read_header(&mut reader).unwrap();
        assert_eq!((header.line_no, header.len()), (1, 3));
        assert_eq!(header.text(), b"id, \"p\" ,x");
        assert_eq!(
            (header.find("p"), header.find("x"), header.find("q")),
            (Some(1), Some(2), None)
        );
        assert_eq!(reader.next_line().unwrap(), Some((2, &b"1,0.5"[..])));

        let mut reader = LineReader::new(&b"\n  \r\nid,p\n"[..], 64, 1024);
        let header = read_header(&mut reader).unwrap();
        assert_eq!((header.line_no, header.get(0)), (3, &b"id"[..]));
    }

    #[test]
    fn a_file_without_a_usable_header_says_why() {
        let header = |input: &[u8]| read_header(&mut LineReader::new(input, 64, 128));
        assert!(matches!(header(b" \n\n"), Err(HeaderError::Empty)));
        assert!(matches!(
            header(b"\nid,\xFF\n"),
            Err(HeaderError::Bad {
                line: 2,
                problem: LineProblem::InvalidUtf8
            })
        ));
        assert!(matches!(
            header(b"\"id,p\n"),
            Err(HeaderError::Bad {
                line: 1,
                problem: LineProblem::UnbalancedQuotes
            })
        ));
        let long = [b'x'; 500];
        assert!(matches!(
            header(&long),
            Err(HeaderError::Line(LineError::TooLong { line: 1 }))
        ));
    }
}
