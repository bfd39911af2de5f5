//! Fuzzing on stable Rust for the decoders that read outside input, run by `cargo test`:
//! inputs made from valid seeds by random edits (bit flips, boundary bytes, inserted multibyte
//! characters and varint runs, deletions, truncations, duplicated ranges) and plain random
//! bytes. Deterministic: `FUZZ_SEED` picks the run (default fixed), `FUZZ_ITERATIONS` its budget
//! per target (default 3000; `make fuzz` runs far more). A failing input is printed in hex with
//! the seed and iteration that made it.
//!
//! The tests run in the test profile, with overflow checks on: an arithmetic overflow the
//! shipped release build would wrap silently fails here too.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// splitmix64: small, fast, and enough to spread edits over an input.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Inputs per target: `FUZZ_ITERATIONS`, else 3000.
pub fn iterations() -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x70d5_41a1)
}

/// Bytes that sit on bounds: NUL, DEL, the sign bits, UTF-8 lead and continuation bytes.
const EDGES: [u8; 9] = [0x00, 0x01, 0x7f, 0x80, 0xbf, 0xc3, 0xe2, 0xf0, 0xff];
/// Text that crosses byte bounds: two-, three- and four-byte characters, and separators.
const PIECES: [&[u8]; 8] = [
    "é".as_bytes(),
    "€".as_bytes(),
    "😀".as_bytes(),
    b"\0",
    b"=",
    b",",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\"",
];

/// One input from `seed` (or none, for random bytes): a few random edits.
pub fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    if v.is_empty() || rng.below(8) == 0 {
        let n = rng.below(96);
        return (0..n).map(|_| rng.next_u64() as u8).collect();
    }
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(v.len() + 1);
        let last = at.min(v.len().saturating_sub(1));
        match rng.below(7) {
            0 if !v.is_empty() => v[last] ^= 1 << rng.below(8),
            1 if !v.is_empty() => v[last] = EDGES[rng.below(EDGES.len())],
            2 => v.insert(at, rng.next_u64() as u8),
            3 => {
                let piece = PIECES[rng.below(PIECES.len())];
                v.splice(at..at, piece.iter().copied());
            }
            4 => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            5 => v.truncate(at),
            _ => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                let range = v[at..end].to_vec();
                v.splice(at..at, range);
            }
        }
    }
    v
}

/// Calls `check` on `iterations()` inputs made from `seeds` (the seeds themselves first).
/// `check` asserts the invariant (no panic; a rejection with the right error).
pub fn run(target: &str, seeds: &[&[u8]], mut check: impl FnMut(&[u8])) {
    let seed = seed();
    let mut rng = Rng::new(
        seed ^ target
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    let mut one = |i: usize, input: &[u8]| {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(input))) {
            eprintln!(
                "fuzz target {target}: input {i} (FUZZ_SEED={seed}) failed: {}",
                hex(input)
            );
            resume_unwind(panic);
        }
    };
    for (i, s) in seeds.iter().enumerate() {
        one(i, s);
    }
    for i in 0..iterations() {
        let s = match seeds.is_empty() {
            true => &[][..],
            false => seeds[rng.below(seeds.len())],
        };
        let input = mutate(&mut rng, s);
        one(seeds.len() + i, &input);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(mutate(&mut a, b"seed input"), mutate(&mut b, b"seed input"));
        }
    }

    #[test]
    fn a_failing_check_fails_the_run() {
        let r = catch_unwind(|| run("selftest", &[b"abc"], |b| assert!(b.len() < 5)));
        assert!(r.is_err(), "no input of 5 bytes or more was made");
    }
}
