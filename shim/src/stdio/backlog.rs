//! Bytes a FIFO could not take yet: bounded memory first, then a bounded spill file, replayed
//! strictly in order.
//!
//! Invariant: a byte read from the process is never dropped. When the spill file cannot take
//! bytes (disk full, I/O error), they wait in `carry`, behind everything spilled, and `room()` is
//! zero: the process is back-pressured until the spill takes them (`retry_spill`) or the FIFO's
//! reader drains the backlog. The pod's spill files together stay within its `SpillBudget`: a
//! spill past it is refused the same way.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::PathBuf,
};

use log::warn;

use super::budget::SpillBudget;
use crate::error::{Error, Result};

pub struct Backlog {
    mem: VecDeque<u8>,
    mem_limit: usize,
    spill: Spill,
    /// Bytes the spill file refused; at most one read's worth (the caller reads at most
    /// `room()` bytes, and `room()` is zero while this holds any).
    carry: Vec<u8>,
    /// Every byte ever pushed.
    taken: u64,
}

struct Spill {
    path: PathBuf,
    limit: u64,
    /// Holds this file's size (`write`) while it exists.
    budget: SpillBudget,
    file: Option<File>,
    /// Bytes before `read` were replayed; bytes in `read..write` wait.
    read: u64,
    write: u64,
}

impl Backlog {
    pub fn new(
        mem_limit: usize,
        spill_path: PathBuf,
        spill_limit: u64,
        budget: SpillBudget,
    ) -> Backlog {
        Backlog {
            mem: VecDeque::new(),
            mem_limit,
            spill: Spill {
                path: spill_path,
                limit: spill_limit,
                budget,
                file: None,
                read: 0,
                write: 0,
            },
            carry: Vec::new(),
            taken: 0,
        }
    }

    /// How many bytes have passed through the backlog (not straight to the FIFO).
    pub fn taken(&self) -> u64 {
        self.taken
    }

    pub fn len(&self) -> u64 {
        self.mem.len() as u64 + self.spill.waiting() + self.carry.len() as u64
    }

    /// Bytes wait because the spill file refused them: `retry_spill` now and then.
    pub fn is_carrying(&self) -> bool {
        !self.carry.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many more bytes fit; at zero the process is back-pressured.
    pub fn room(&self) -> u64 {
        if self.is_carrying() {
            return 0;
        }
        let mem_room = self.mem_limit.saturating_sub(self.mem.len()) as u64;
        let spill_room = self
            .spill
            .limit
            .saturating_sub(self.spill.write - self.spill.read);
        // While spilled bytes wait, memory only holds older bytes: new ones must go behind them.
        if self.spill.write > self.spill.read {
            spill_room
        } else {
            mem_room + spill_room
        }
    }

    /// Appends `data`, which must fit in `room()`. Bytes the spill file refuses are carried.
    pub fn push(&mut self, mut data: &[u8]) {
        debug_assert!(data.len() as u64 <= self.room());
        self.taken += data.len() as u64;
        if self.spill.waiting() == 0 && !self.is_carrying() {
            let n = data
                .len()
                .min(self.mem_limit.saturating_sub(self.mem.len()));
            self.mem.extend(&data[..n]);
            data = &data[n..];
        }
        if data.is_empty() {
            return;
        }
        if let Err(e) = self.spill.append(data) {
            warn!("{e}: the process waits until its output has somewhere to go");
            self.carry.extend_from_slice(data);
        }
    }

    /// Hands the carried bytes to the spill file again; true once it took them.
    pub fn retry_spill(&mut self) -> bool {
        if !self.is_carrying() {
            return true;
        }
        match self.spill.append(&self.carry) {
            Ok(()) => {
                log::info!("{} takes output again", self.spill.path.display());
                self.carry = Vec::new();
                true
            }
            Err(_) => false,
        }
    }

    /// The oldest waiting bytes (at most `buf.len()` of them from the spill file).
    pub fn front<'a>(&'a self, buf: &'a mut [u8]) -> Result<&'a [u8]> {
        if !self.mem.is_empty() {
            return Ok(self.mem.as_slices().0);
        }
        if self.spill.waiting() > 0 {
            return self.spill.peek(buf);
        }
        Ok(&self.carry)
    }

    pub fn consume(&mut self, mut n: usize) {
        let from_mem = n.min(self.mem.len());
        self.mem.drain(..from_mem);
        n -= from_mem;
        if self.mem.is_empty() && self.mem.capacity() > 0 {
            // Memory held for a reader that went away is given back once it caught up.
            self.mem = VecDeque::new();
        }
        let from_spill = (n as u64).min(self.spill.waiting());
        if from_spill > 0 {
            self.spill.consume(from_spill);
        }
        let from_carry = n - from_spill as usize;
        self.carry.drain(..from_carry.min(self.carry.len()));
        if self.carry.is_empty() && self.carry.capacity() > 0 {
            self.carry = Vec::new();
        }
    }
}

impl Spill {
    fn waiting(&self) -> u64 {
        self.write - self.read
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        if self.file.is_none() {
            // The container's output is the pod's alone, whoever can traverse the bundle.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&self.path)
                .map_err(Error::io(format!("create spill {}", self.path.display())))?;
            self.file = Some(file);
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let n = data.len() as u64;
        if !self.budget.take(n) {
            return Err(Error::ResourceExhausted(format!(
                "spill {}: the pod's spill files hold {} of their {} bytes",
                self.path.display(),
                self.budget.used(),
                self.budget.limit()
            )));
        }
        if let Err(e) = file.write_all_at(data, self.write) {
            self.budget.give_back(n);
            return Err(Error::io(format!("write spill {}", self.path.display()))(e));
        }
        self.write += n;
        Ok(())
    }

    fn peek<'a>(&self, buf: &'a mut [u8]) -> Result<&'a [u8]> {
        let (Some(file), true) = (&self.file, self.write > self.read) else {
            return Ok(&[]);
        };
        let want = buf.len().min((self.write - self.read) as usize);
        let n = file
            .read_at(&mut buf[..want], self.read)
            .map_err(Error::io(format!("read spill {}", self.path.display())))?;
        Ok(&buf[..n])
    }

    fn consume(&mut self, n: u64) {
        self.read = (self.read + n).min(self.write);
        if self.read == self.write {
            self.remove();
        }
    }

    fn remove(&mut self) {
        if self.file.take().is_some() {
            if let Err(e) = std::fs::remove_file(&self.path) {
                warn!("remove spill {}: {e}", self.path.display());
            }
        }
        self.budget.give_back(self.write);
        self.read = 0;
        self.write = 0;
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unbounded() -> SpillBudget {
        SpillBudget::new(u64::MAX)
    }

    fn drain_all(b: &mut Backlog) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 7];
        while !b.is_empty() {
            let chunk = b.front(&mut buf).unwrap().to_vec();
            assert!(!chunk.is_empty());
            out.extend_from_slice(&chunk);
            b.consume(chunk.len());
        }
        out
    }

    #[test]
    fn spills_past_memory_and_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spill");
        let mut b = Backlog::new(10, path.clone(), 100, unbounded());
        assert_eq!(b.room(), 110);
        b.push(b"0123456789abc");
        assert!(path.exists());
        assert_eq!(b.len(), 13);
        // Memory drained, spill still waiting: new bytes queue behind the spilled ones.
        let mut buf = [0u8; 64];
        assert_eq!(b.front(&mut buf).unwrap(), b"0123456789");
        b.consume(10);
        assert_eq!(b.room(), 97);
        b.push(b"def");
        assert_eq!(drain_all(&mut b), b"abcdef");
        assert!(!path.exists(), "spill file removed once replayed");
        b.push(b"xyz");
        assert!(!path.exists(), "back to memory after the spill drained");
        assert_eq!(drain_all(&mut b), b"xyz");
    }

    /// A container's output, spilled while containerd is away, is the pod's alone: 0600 whatever
    /// the umask (the bundle's work directory is traversable by others).
    #[test]
    fn spill_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spill");
        let mut b = Backlog::new(1, path.clone(), 100, unbounded());
        b.push(b"secret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "spill file mode {mode:o}");
    }

    #[test]
    fn room_reaches_zero_at_both_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Backlog::new(4, dir.path().join("s"), 4, unbounded());
        b.push(b"12345678");
        assert_eq!(b.room(), 0);
        assert_eq!(drain_all(&mut b), b"12345678");
        assert_eq!(b.room(), 8);
    }

    #[test]
    fn spill_file_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut b = Backlog::new(1, path.clone(), 10, unbounded());
        b.push(b"abc");
        assert!(path.exists());
        drop(b);
        assert!(!path.exists());
    }

    /// Bytes the spill file refuses wait behind the spilled ones, stop the reads (room 0), and
    /// come out in order whether the spill takes them later or the reader drains them first.
    #[test]
    fn refused_bytes_are_carried_in_order_never_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("not-yet");
        let mut b = Backlog::new(4, spill_dir.join("s"), 100, unbounded());
        b.push(b"0123456789");
        assert!(b.is_carrying(), "the spill file could not be created");
        assert_eq!((b.len(), b.room()), (10, 0));
        assert!(!b.retry_spill());
        std::fs::create_dir(&spill_dir).unwrap();
        assert!(b.retry_spill());
        assert!(!b.is_carrying());
        assert_eq!(b.room(), 94);
        b.push(b"ab");
        assert_eq!(drain_all(&mut b), b"0123456789ab");

        // Drained by the reader while still refused: memory, then the carried bytes.
        std::fs::remove_dir_all(&spill_dir).unwrap();
        b.push(b"wxyz!?");
        assert!(b.is_carrying());
        assert_eq!(drain_all(&mut b), b"wxyz!?");
        assert!(!b.is_carrying());
        assert_eq!(b.room(), 104);
    }

    /// Two streams of one pod share its spill budget: the second's spill is refused while the
    /// first's file holds the budget, its bytes wait in order (room 0), and they spill once the
    /// first file is drained and removed.
    #[test]
    fn the_pods_spill_files_share_one_bound() {
        let dir = tempfile::tempdir().unwrap();
        let budget = SpillBudget::new(10);
        let mut a = Backlog::new(1, dir.path().join("a"), 100, budget.clone());
        let mut b = Backlog::new(1, dir.path().join("b"), 100, budget.clone());
        a.push(b"0123456789A");
        assert_eq!(budget.used(), 10);
        b.push(b"xyz");
        assert!(b.is_carrying(), "b spilled past the pod's bound");
        assert_eq!(b.room(), 0);
        assert!(!b.retry_spill());
        assert_eq!(drain_all(&mut a), b"0123456789A");
        assert_eq!(budget.used(), 0, "a's file removed, its bytes given back");
        assert!(b.retry_spill());
        assert_eq!(drain_all(&mut b), b"xyz");
        assert_eq!(budget.used(), 0);
    }
}
