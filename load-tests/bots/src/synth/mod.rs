//! What the `synth` binary needs besides the bots: its command line ([`cli`]), what it reads
//! from outside the bots to judge a run (the SFU's `/metrics`, `/proc` CPU and UDP counters;
//! [`probe`]) and the end-of-run table and JSON ([`report`]). They live in the library next to
//! [`room`](crate::room), [`cluster`](crate::cluster) and [`rejoin`](crate::rejoin), whose
//! results they read, so `src/bin/synth.rs` stays the shell that starts the rooms and waits.

pub mod cli;
pub mod probe;
pub mod report;
