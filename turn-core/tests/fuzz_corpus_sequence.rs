//! Replays the committed corpus of the `server_sequence` fuzz target, so every
//! input the fuzzer found interesting stays a regression test.

#[path = "../../fuzz/src/server_sequence.rs"]
mod server_sequence;

#[test]
fn server_sequence_corpus_replays_without_breaking_invariants() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/server_sequence");
    let mut n = 0;
    let mut total = server_sequence::Reached::default();
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let reached = server_sequence::run(&data);
        total.allocations += reached.allocations;
        total.forwards += reached.forwards;
        total.to_client += reached.to_client;
        n += 1;
    }
    assert!(n >= 5, "corpus has {n} files");
    // The corpus must reach past authentication into the relaying paths.
    assert!(
        total.allocations > 0 && total.forwards > 0 && total.to_client > 0,
        "{total:?}"
    );
}
