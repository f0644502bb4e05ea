//! The fuzz targets' checks on stable, in the normal test suite: every seed in
//! `fuzz/seeds/<target>/`, then a few thousand deterministic mutations of them per parser. The
//! checks themselves (no panic, round trips, agreement between parsers, no forged token
//! accepted) are in `fuzz/src/checks.rs`, shared with the libFuzzer targets run by
//! `scripts/fuzz.sh`, so both test the same properties.
//!
//! After changing what a seed is made from (a token's claims, the protocol examples), rewrite
//! the seed files with `cargo test --test fuzz_corpus -- --ignored write_seed_files`.

#[path = "../fuzz/src/checks.rs"]
mod checks;

/// `src/room/channel.rs` names `crate::ids::ParticipantId`.
mod ids {
    pub use consult_sfu::ids::*;
}

#[path = "../fuzz/src/room_shim.rs"]
mod room;

use std::path::PathBuf;

use consult_sfu::consult::token;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn protocol_md() -> String {
    std::fs::read_to_string(root().join("signaling/PROTOCOL.md")).expect("PROTOCOL.md")
}

/// The seed files of one target, sorted by name.
fn seed_files(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz/seeds").join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("seed file"))
        })
        .collect();
    files.sort();
    files
}

/// xorshift64*: deterministic, so a failure names its iteration and reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers: JSON structure, STUN/RTP/VP8 flag bytes, boundaries.
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b":",
    b",",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"-1",
    b"1e400",
    b"18446744073709551616",
    b".",
    b"=",
    b"\x00",
    b"\xff",
    b"\x80",
    b"\x7f",
    b"\x21\x12\xa4\x42",
    b"\x00\x06",
    b"\xc3\xa0",
];

/// One libFuzzer-style mutation (a few stacked): bit flips, byte sets, inserts, deletes,
/// truncation, duplication, splicing with another seed, interesting tokens.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(d.len() + 1);
        match rng.below(8) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
            2 => d.insert(at, rng.next() as u8),
            3 if !d.is_empty() => {
                let i = rng.below(d.len());
                let n = 1 + rng.below(8.min(d.len() - i));
                d.drain(i..i + n);
            }
            4 => d.truncate(at),
            5 if !d.is_empty() => {
                let i = rng.below(d.len());
                let n = 1 + rng.below(16.min(d.len() - i));
                let chunk = d[i..i + n].to_vec();
                d.splice(at..at, chunk);
            }
            6 if !other.is_empty() => {
                let i = rng.below(other.len());
                let n = 1 + rng.below(other.len() - i);
                d.splice(at..at, other[i..i + n].iter().copied());
            }
            _ => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                d.splice(at..at, token.iter().copied());
            }
        }
    }
    d
}

/// Runs `target`'s checks on its seeds and `count` mutations of them.
fn fuzz(target: &str, count: usize) {
    let seeds: Vec<Vec<u8>> = seed_files(target).into_iter().map(|(_, d)| d).collect();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    for seed in &seeds {
        checks::run(target, seed);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    for i in 0..count {
        let seed = &seeds[i % seeds.len()];
        let other = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, other);
        let outcome = std::panic::catch_unwind(|| checks::run(target, &input));
        if outcome.is_err() {
            panic!("{target}: mutation {i} failed; input {input:?}");
        }
    }
}

#[test]
fn every_target_has_seed_files() {
    for target in checks::TARGETS {
        assert!(
            !seed_files(target).is_empty(),
            "fuzz/seeds/{target}/ is empty"
        );
    }
}

/// The seeds as the code makes them now (a token signed by today's `sign`, the examples in
/// today's PROTOCOL.md), whether or not the files were rewritten since.
#[test]
fn generated_seeds_pass() {
    for (target, name, bytes) in checks::seeds(&protocol_md()) {
        let outcome = std::panic::catch_unwind(|| checks::run(target, &bytes));
        assert!(outcome.is_ok(), "{target}/{name} failed");
    }
}

#[test]
fn signaling_message() {
    fuzz("signaling_message", 4000);
}

#[test]
fn invite_token() {
    fuzz("invite_token", 4000);
}

#[test]
fn vp8_descriptor() {
    fuzz("vp8_descriptor", 4000);
}

#[test]
fn h264_keyframe() {
    fuzz("h264_keyframe", 4000);
}

#[test]
fn red_primary() {
    fuzz("red_primary", 4000);
}

#[test]
fn data_channel() {
    fuzz("data_channel", 4000);
}

#[test]
fn stun_ufrag() {
    fuzz("stun_ufrag", 4000);
}

#[test]
fn rtc_datagram() {
    // Each input builds an `Rtc` and negotiates the offer: fewer, costlier runs.
    fuzz("rtc_datagram", 300);
}

/// The invite property spelled out: no single edit of a signed token verifies, whatever part
/// it touches (the shared check asserts the same for every input, this makes sure mutations
/// of real tokens were among them).
#[test]
fn no_mutated_token_verifies() {
    let mut rng = Rng(7);
    for original in checks::signed_tokens() {
        for i in 0..2000 {
            let mutated = mutate(&mut rng, original.as_bytes(), b".");
            let Ok(text) = std::str::from_utf8(&mutated) else {
                continue;
            };
            if text == original {
                continue;
            }
            let got = token::verify(text, checks::TOKEN_SECRET, checks::TOKEN_NOW);
            assert!(got.is_err(), "mutation {i} verified: {text:?} -> {got:?}");
        }
    }
}

/// Writes the generated seeds to `fuzz/seeds/<target>/` (run by hand after changing them).
#[test]
#[ignore]
fn write_seed_files() {
    for (target, name, bytes) in checks::seeds(&protocol_md()) {
        let dir = root().join("fuzz/seeds").join(target);
        std::fs::create_dir_all(&dir).expect("seed dir");
        std::fs::write(dir.join(name), bytes).expect("seed file");
    }
}

#[test]
fn redis_reply() {
    fuzz("redis_reply", 20000);
}
