#![no_main]
// The properties live in src/checks.rs, shared with the stable replay test (tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| consult_sfu_fuzz::checks::red_primary(data));
