#![no_main]

//! The QUIC relay's parsers (capsules, datagram headers, the CONNECT-UDP template,
//! Proxy-Authorization) on arbitrary bytes. Seed corpus: `corpus/masque_parse/`.
//! Run with `cargo fuzz run masque_parse`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nexrtc_fuzz::masque_parse::run(data);
});
