//! What the `--check-config` tests share: running `nexrtc` to its end (bounded),
//! files in a directory of the test's own, certificates.

#![allow(dead_code)] // each test file uses a different part of this module

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished `nexrtc` printed, and its exit code.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Both streams, for assertions about what was printed anywhere.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `nexrtc args…` with `env`, killed if it has not ended within 20 s (a
/// check that started a server instead would hang here).
pub fn nexrtc(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.args(args)
        .env_remove("NEXRTC_STATIC_AUTH_SECRET")
        .env_remove("NEXRTC_NONCE_SECRET")
        .env_remove("NEXRTC_CONTROLLER")
        .env_remove("NEXRTC_NODE_TOKEN")
        .env_remove("NEXRTC_REGION")
        .env_remove("NEXRTC_NODE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start nexrtc");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nexrtc {args:?} did not end within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut stdout).expect("stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut stderr).expect("stderr");
    }
    Output {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// A directory of the test's own under the target directory, emptied first.
pub fn dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("check-config")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_owned()
}

/// A self-signed certificate and its key for `name`, as PEM files in `dir`:
/// (certificate path, key path).
pub fn cert_pair(dir: &Path, name: &str) -> (String, String) {
    let g = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("rcgen");
    (
        file(dir, &format!("{name}.crt"), &g.cert.pem()),
        file(dir, &format!("{name}.key"), &g.key_pair.serialize_pem()),
    )
}

/// A test GeoIP City database of the repository.
pub fn geoip_db() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("geo/testdata/synthetic-city.mmdb")
        .to_str()
        .expect("utf-8 path")
        .to_owned()
}
