//! Helpers shared by the deterministic simulations (tests only).

pub mod linearizability;
pub mod sim_disk;

pub use crate::rng::{mix, Rng};

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
