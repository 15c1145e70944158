//! Reading a file on a second thread, which also computes its SHA-256, so the parsing thread
//! only parses: the check uses the machine's second core for I/O and hashing.
//!
//! The thread reads whole blocks ([`BLOCK_BYTES`]) ahead into a bounded channel
//! ([`BLOCKS_AHEAD`] blocks, so memory stays bounded) and always reads to the end of the
//! file, so the digest covers every byte even when the parser stops early. It is owned by
//! [`Prefetch`]: dropping it disconnects the channel, which stops the thread, and joins it.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Bytes per block read.
pub const BLOCK_BYTES: usize = 1 << 20;
/// Blocks read ahead of the parser.
pub const BLOCKS_AHEAD: usize = 4;

/// A file read ahead on another thread; implements [`Read`].
pub struct Prefetch {
    /// Blocks from the reader thread.
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    /// Consumed blocks, returned for reuse.
    back: SyncSender<Vec<u8>>,
    /// The block being consumed.
    block: Vec<u8>,
    /// Position in `block`.
    pos: usize,
    /// The thread, which returns the digest.
    thread: Option<JoinHandle<io::Result<[u8; 32]>>>,
}

fn reader(
    mut f: File,
    tx: SyncSender<io::Result<Vec<u8>>>,
    back: Receiver<Vec<u8>>,
) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut live = true;
    loop {
        // Blocks come back once consumed: reusing them saves faulting in fresh pages.
        let mut block = back.try_recv().unwrap_or_default();
        block.resize(BLOCK_BYTES, 0);
        let mut n = 0;
        while n < BLOCK_BYTES {
            match f.read(&mut block[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    let _ = tx.send(Err(e));
                    return Err(kind.into());
                }
            }
        }
        block.truncate(n);
        h.update(&block);
        if n == 0 {
            return Ok(h.finalize().into());
        }
        // Once the parser has gone, keep hashing to the end without sending.
        if live && tx.send(Ok(block)).is_err() {
            live = false;
        }
    }
}

impl Prefetch {
    /// Opens `path` and starts reading it.
    pub fn open(path: &Path) -> io::Result<Prefetch> {
        let f = File::open(path)?;
        let (tx, rx) = sync_channel(BLOCKS_AHEAD);
        let (back_tx, back_rx) = sync_channel(BLOCKS_AHEAD + 1);
        let thread = std::thread::Builder::new()
            .name("holdout-prefetch".into())
            .spawn(move || reader(f, tx, back_rx))?;
        Ok(Prefetch {
            back: back_tx,
            rx: Some(rx),
            block: Vec::new(),
            pos: 0,
            thread: Some(thread),
        })
    }

    /// Stops reading ahead and returns the SHA-256 of the whole file.
    pub fn finish(mut self) -> io::Result<[u8; 32]> {
        self.rx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the prefetch thread panicked")),
            None => Err(io::Error::other("the prefetch thread is gone")),
        }
    }
}

impl Read for Prefetch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.block.len() {
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Ok(block)) => {
                    let used = std::mem::replace(&mut self.block, block);
                    let _ = self.back.try_send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread ended: end of file.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_and_the_digest_are_the_files_even_when_reading_stops_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(3 * BLOCK_BYTES + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let mut all = Vec::new();
        Prefetch::open(&path)
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, data);
        let mut early = Prefetch::open(&path).unwrap();
        let mut head = [0u8; 10];
        early.read_exact(&mut head).unwrap();
        assert_eq!(
            early.finish().unwrap(),
            <[u8; 32]>::from(Sha256::digest(&data))
        );
    }
}
