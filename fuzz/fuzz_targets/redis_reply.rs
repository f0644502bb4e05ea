#![no_main]
// The properties live in src/redis_reply.rs, shared with the stable replay test (tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| consult_sfu_fuzz::checks::redis_reply::redis_reply(data));
