//! A short, deterministic stand-in for the fuzzer, for the workspace tests: every seed of a
//! target, then a few hundred mutations of them from a fixed PRNG seed. The real runs (100,000
//! inputs and more per target, coverage-guided) are `scripts/fuzz`.

use std::path::{Path, PathBuf};

/// The seed inputs of `target` (`seeds/<target>/`, regression cases included).
pub fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let bytes = std::fs::read(&path).ok()?;
            Some((path, bytes))
        })
        .collect();
    out.sort();
    out
}

/// xorshift64*: small, fast, and the same sequence everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Fragments that matter to the formats under test.
const DICTIONARY: &[&[u8]] = &[
    b"\n",
    b": ",
    b"- ",
    b"---\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b"&a ",
    b"*a",
    b"!!str ",
    b"null",
    b"true",
    b"-1",
    b"1e400",
    b"9223372036854775808",
    b"\\u0000",
    b".",
    b"=",
    b"type: ",
    b"mesh: ",
    b"name: ",
    b"spec:\n  ",
    b"targetRef:\n",
    b"kind: Mesh",
];

/// One mutation of `input`, from `others` (for crossover) and the dictionary.
pub fn mutate(rng: &mut Rng, input: &[u8], others: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next_u64() as u8;
            }
            1 => out.insert(at, rng.next_u64() as u8),
            2 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                out.splice(at..at, word.iter().copied());
            }
            4 if !others.is_empty() => {
                let other = others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                let to = (from + rng.below(64)).min(other.len());
                out.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                let len = rng.below(32);
                out.splice(at..at, (0..len).map(|_| rng.next_u64() as u8));
            }
        }
    }
    out
}

/// Runs `target` over its seeds and `runs` mutations of them; returns how many inputs ran.
pub fn run(target: &str, f: fn(&[u8]), runs: usize, seed: u64) -> usize {
    let seeds = seeds(target);
    for (_, bytes) in &seeds {
        f(bytes);
    }
    let inputs: Vec<&[u8]> = seeds.iter().map(|(_, b)| b.as_slice()).collect();
    let mut rng = Rng::new(seed);
    for _ in 0..runs {
        let base: &[u8] = if inputs.is_empty() {
            &[]
        } else {
            inputs[rng.below(inputs.len())]
        };
        f(&mutate(&mut rng, base, &inputs));
    }
    seeds.len() + runs
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNS: usize = 300;
    const SEED: u64 = 0x5EED_A701;

    #[test]
    fn resource_yaml_smoke() {
        assert!(run("resource_yaml", crate::resource_yaml, RUNS, SEED) > RUNS);
    }

    #[test]
    fn resource_json_smoke() {
        assert!(run("resource_json", crate::resource_json, RUNS, SEED) > RUNS);
    }

    #[test]
    fn token_smoke() {
        assert!(run("token", crate::token, RUNS, SEED) > RUNS);
    }

    #[test]
    fn kds_smoke() {
        assert!(run("kds", crate::kds, RUNS, SEED) > RUNS);
    }

    /// Writes `seeds/token/` (valid tokens of the fuzzing key): `cargo test -p atoll-fuzz --
    /// --ignored write_token_seeds`.
    #[test]
    #[ignore = "writes the token seed files: run by hand when the token format changes"]
    fn write_token_seeds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/token");
        std::fs::create_dir_all(&dir).expect("seed directory");
        for (i, (name, bytes)) in crate::token_target::seed_inputs().iter().enumerate() {
            std::fs::write(dir.join(format!("{name}-{i}")), bytes).expect("seed written");
        }
    }

    #[test]
    fn xds_smoke() {
        assert!(run("xds", crate::xds, RUNS, SEED) > RUNS);
    }
}
