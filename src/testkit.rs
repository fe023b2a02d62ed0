//! Helpers shared by the deterministic simulations (tests only).

/// SplitMix64: a small seeded generator, good enough to pick simulated actions; the same seed
/// replays the same run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform index in `0..n` (n > 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `ppm` per million.
    pub fn chance(&mut self, ppm: u64) -> bool {
        self.below(1_000_000) < ppm
    }
}

/// SplitMix64's finaliser: a well-spread hash of a `u64`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seeds a simulation runs: `VOLERY_SEED=<u64>` replays one, `VOLERY_SIM_SEEDS=<n>` runs
/// `0..n`, otherwise `0..default`.
pub fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("VOLERY_SEED") {
        Ok(s) => vec![s.parse().expect("VOLERY_SEED must be a u64")],
        Err(_) => {
            let n = std::env::var("VOLERY_SIM_SEEDS")
                .map(|s| s.parse().expect("VOLERY_SIM_SEEDS must be a u64"))
                .unwrap_or(default);
            (0..n).collect()
        }
    }
}

/// Runs one seed of a simulation; if it fails, says how to replay it before passing the panic on.
pub fn replaying<T>(seed: u64, run: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|e| {
        eprintln!("simulation failed with seed {seed}; replay with VOLERY_SEED={seed}");
        std::panic::resume_unwind(e)
    })
}
