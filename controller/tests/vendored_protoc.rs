//! The build needs no system protoc: `.cargo/config.toml` names `.cargo/protoc` as
//! `PROTOC` for build scripts (etcd-client's), and that script runs the protoc the
//! protoc-bin-vendored crates ship, found beside the crate whose build script runs
//! it. Here it runs as etcd-client's build script would, with a PATH that has no
//! protoc, and compiles a file importing a well-known type (no libprotobuf-dev).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// A crate directory beside the vendored protoc's, as etcd-client's is.
fn sibling_crate_dir() -> PathBuf {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("a vendored protoc for this host");
    protoc
        .parent() // bin/
        .and_then(Path::parent) // the per-arch crate
        .expect("crate dir")
        .to_owned()
}

fn run_protoc(args: &[&str], cwd: &Path) -> std::process::Output {
    // A PATH with `uname` only: no system protoc to fall back on.
    let bin = tempfile::tempdir().expect("tempdir");
    let uname = ["/usr/bin/uname", "/bin/uname"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("uname");
    std::os::unix::fs::symlink(uname, bin.path().join("uname")).expect("symlink");
    Command::new(workspace().join(".cargo/protoc"))
        .args(args)
        .current_dir(cwd)
        .env("CARGO_MANIFEST_DIR", sibling_crate_dir())
        .env("PATH", bin.path())
        .output()
        .expect("run .cargo/protoc")
}

#[test]
fn cargo_config_names_the_wrapper_without_forcing_it() {
    let config = std::fs::read_to_string(workspace().join(".cargo/config.toml")).expect("read");
    let line = config
        .lines()
        .find(|l| l.starts_with("PROTOC"))
        .expect("PROTOC in [env]");
    assert!(line.contains(r#"value = ".cargo/protoc""#), "{line}");
    assert!(line.contains("relative = true"), "{line}");
    assert!(
        !line.contains("force"),
        "a PROTOC set by the user must win: {line}"
    );
}

#[test]
fn the_wrapper_runs_the_vendored_protoc_with_the_well_known_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_protoc(&["--version"], dir.path());
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("libprotoc "));

    std::fs::write(
        dir.path().join("t.proto"),
        "syntax = \"proto3\";\nimport \"google/protobuf/descriptor.proto\";\n\
         message M { google.protobuf.FileDescriptorProto f = 1; }\n",
    )
    .expect("write");
    let out = run_protoc(
        &["-I.", "--include_imports", "-odescriptor.bin", "t.proto"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("descriptor.bin").exists());
}
