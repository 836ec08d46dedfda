#![no_main]

//! The TURN server core fed arbitrary sequences of inputs (packets, signed
//! requests, peer data, time jumps, closes, rotation, drain), checking the
//! invariants the I/O shell relies on. Seed corpus: `corpus/server_sequence/`.
//! Run with `cargo fuzz run server_sequence`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nexrtc_fuzz::server_sequence::run(data);
});
