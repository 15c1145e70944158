//! Scanning a large file on several workers: this thread reads the file (hashing it as it
//! goes) and cuts it into chunks of whole records ([`CHUNK_BYTES`] or a little more),
//! workers parse each chunk in place, and their accumulators merge into one.
//!
//! A cut is only made where a record ends: at a line end outside quotes, with the same
//! quoting rule as the reader (a quote opens a field only at its start). Chunks are numbered
//! so every row has a fixed (chunk, row) position whatever worker read it; the leakage
//! sample depends on positions only, so results are the same from run to run. Memory is a
//! few chunks in flight per worker. On anything unusual — a malformed record, a file that
//! starts with a blank line — it gives up and the caller reads the file in order, which
//! reports the problem exactly.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::mpsc::sync_channel;

use memchr::{memchr, memrchr};
use sha2::{Digest, Sha256};

use super::Progress;
use super::csv_stream::{CsvError, MAX_RECORD_BYTES};
use super::head::Head;
use super::idset::Sorted;
use super::layout::LayoutFile;
use super::worker::{Shared, Worker};

/// Bytes per chunk handed to a worker (small in tests, so fixtures span several chunks).
pub const CHUNK_BYTES: usize = if cfg!(test) { 1 << 10 } else { 4 << 20 };

/// A parallel scan's result.
pub struct Done {
    /// The merged worker.
    pub worker: Worker,
    /// The other workers' id sets, and per feature-row set their collected hashes.
    pub ids_and_sets: (Vec<Sorted>, Vec<Vec<Sorted>>),
    /// The first row number of each chunk.
    pub offsets: Vec<u64>,
    /// The file's SHA-256.
    pub digest: Option<[u8; 32]>,
}

/// Where the last record in `b` that is followed by a line end ends (just after the `\n`),
/// reading quotes as the reader does; `first` stops at the first one instead.
fn boundary(b: &[u8], delimiter: u8, first: bool) -> Option<usize> {
    if memchr(b'"', b).is_none() {
        return if first {
            memchr(b'\n', b)
        } else {
            memrchr(b'\n', b)
        }
        .map(|i| i + 1);
    }
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let mut last = None;
    for (i, &c) in b.iter().enumerate() {
        state = match state {
            State::Quoted if c == b'"' => State::QuoteInQuoted,
            State::Quoted => State::Quoted,
            State::QuoteInQuoted if c == b'"' => State::Quoted,
            _ if c == b'\n' => {
                last = Some(i + 1);
                if first {
                    return last;
                }
                State::FieldStart
            }
            _ if c == delimiter => State::FieldStart,
            State::FieldStart if c == b'"' => State::Quoted,
            _ => State::Unquoted,
        };
    }
    last
}

/// The file being cut, hashed as it is read.
struct Source {
    file: File,
    sha: Sha256,
    read: u64,
}

impl Source {
    /// Reads until `buf` holds `want` bytes or the file ends; returns whether it ended.
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> io::Result<bool> {
        if buf.len() >= want {
            return Ok(false);
        }
        let start = buf.len();
        let need = (want - start) as u64;
        let n = (&mut self.file).take(need).read_to_end(buf)? as u64;
        self.sha.update(&buf[start..]);
        self.read += n;
        Ok(n < need)
    }
}

/// Scans `file` with several workers shaped like `template`. `None`: read it in order.
pub fn scan(
    file: &LayoutFile,
    head: &Head,
    sh: &Shared<'_>,
    template: &Worker,
    progress: &mut dyn Progress,
) -> io::Result<Option<Done>> {
    let Ok(f) = File::open(&file.path) else {
        return Ok(None);
    };
    let mut src = Source {
        file: f,
        sha: Sha256::new(),
        read: 0,
    };
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    let delimiter = head.delimiter;
    let mut buf = Vec::with_capacity(CHUNK_BYTES + (1 << 20));
    let mut eof = src.fill(&mut buf, 1 << 16)?;
    let header_end = loop {
        if buf.first().is_some_and(|&b| b == b'\n' || b == b'\r') {
            return Ok(None);
        }
        if let Some(e) = boundary(&buf, delimiter, true) {
            break e;
        }
        if eof || buf.len() >= MAX_RECORD_BYTES {
            return Ok(None);
        }
        let want = buf.len() * 2;
        eof = src.fill(&mut buf, want)?;
    };
    buf.drain(..header_end);

    let (tx, rx) = sync_channel::<(u32, Vec<u8>)>(workers * 2);
    let rx = Mutex::new(rx);
    let results: Mutex<Vec<(u32, Result<u64, CsvError>)>> = Mutex::new(Vec::new());
    let mut pool: Vec<Worker> = (0..workers).map(|_| template.sibling(sh)).collect();
    let framed = std::thread::scope(|scope| -> io::Result<Option<Vec<Worker>>> {
        let handles: Vec<_> = pool
            .drain(..)
            .map(|mut w| {
                let (rx, results) = (&rx, &results);
                scope.spawn(move || {
                    loop {
                        let job = rx.lock().expect("the chunk queue is never poisoned").recv();
                        let Ok((no, bytes)) = job else { break };
                        let r = w.chunk(sh, bytes, delimiter, no);
                        results
                            .lock()
                            .expect("the results are never poisoned")
                            .push((no, r));
                    }
                    w
                })
            })
            .collect();
        let mut no = 0u32;
        let mut ok = true;
        loop {
            if !eof {
                eof = src.fill(&mut buf, CHUNK_BYTES)?;
            }
            if buf.is_empty() {
                break;
            }
            let cut = if eof {
                Some(buf.len())
            } else {
                boundary(&buf, delimiter, false)
            };
            let Some(cut) = cut else {
                if buf.len() >= MAX_RECORD_BYTES {
                    ok = false;
                    break;
                }
                let want = buf.len() + CHUNK_BYTES;
                eof = src.fill(&mut buf, want)?;
                continue;
            };
            let mut rest = Vec::with_capacity(CHUNK_BYTES + (1 << 20));
            rest.extend_from_slice(&buf[cut..]);
            buf.truncate(cut);
            let chunk = std::mem::replace(&mut buf, rest);
            if tx.send((no, chunk)).is_err() {
                ok = false;
                break;
            }
            no += 1;
            progress.advance(src.read);
        }
        drop(tx);
        let done: Vec<Worker> = handles
            .into_iter()
            .map(|h| h.join().expect("a scan worker panicked"))
            .collect();
        Ok(ok.then_some(done))
    })?;
    let Some(mut done) = framed else {
        return Ok(None);
    };
    let mut results = results
        .into_inner()
        .expect("the results are never poisoned");
    results.sort_by_key(|r| r.0);
    let mut offsets = Vec::with_capacity(results.len());
    let mut total = 0u64;
    for (_, r) in &results {
        let Ok(n) = r else { return Ok(None) };
        offsets.push(total);
        total += n;
    }
    if offsets.is_empty() {
        offsets.push(0);
    }
    let digest = Some(src.sha.finalize().into());
    let mut worker = done.remove(0);
    let mut ids = Vec::new();
    let mut sets: Vec<Vec<Sorted>> = (0..sh.set_count()).map(|_| Vec::new()).collect();
    for w in done {
        worker.merge(w, &mut ids, &mut sets)?;
    }
    Ok(Some(Done {
        worker,
        ids_and_sets: (ids, sets),
        offsets,
        digest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_where_records_end_even_with_quoted_line_ends() {
        assert_eq!(boundary(b"a,b\n1,2\n3,", b',', false), Some(8));
        assert_eq!(boundary(b"a,b\n1,2\n3,", b',', true), Some(4));
        assert_eq!(boundary(b"1,\"x\ny\"\n2,\"z\n", b',', false), Some(8));
        assert_eq!(
            boundary(b"1,a\"b\n2", b',', false),
            Some(6),
            "a quote inside a field is a character"
        );
        assert_eq!(boundary(b"1,\"open\n", b',', false), None);
    }
}
