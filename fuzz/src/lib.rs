//! Fuzz harnesses for NexRTC Edge, one module per target in `fuzz_targets/`.
//!
//! The harness bodies live here, not in the targets, so turn-core's tests can
//! replay the seed corpora through the very same code (see
//! `turn-core/tests/stun_fuzz_corpus.rs`).

pub mod masque_parse;
pub mod stun_parse;
pub mod server_sequence;
