#![no_main]

//! STUN / ChannelData / stream framing parsers on arbitrary bytes.
//! Seed corpus: `corpus/stun_parse/`. Run with `cargo fuzz run stun_parse`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nexrtc_fuzz::stun_parse::run(data);
});
