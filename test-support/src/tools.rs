//! External programs the tests drive (etcd, coturn's `turnutils_*` and `turnserver`,
//! chromium, node, ...), and the one rule for a missing one: under `CI=true` it fails the
//! test, naming it and how to install it; otherwise the test is skipped with a loud notice
//! on stderr (the caller returns early).

use std::io::Write as _;
use std::path::PathBuf;

/// Whether this is CI (`CI` set to anything but empty, `0` or `false`; `.ci/run` sets
/// `CI=true`), where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && !v.eq_ignore_ascii_case("false") && v != "0"
    })
}

/// The path of `program` on `PATH`; `None` after [`missing`] when it is not there.
/// `package` is the Debian package that installs it (`coturn`, `etcd-server`, ...).
pub fn require_tool(program: &str, package: &str) -> Option<PathBuf> {
    let found = on_path(program);
    if found.is_none() {
        missing(program, &format!("apt-get install {package}"));
    }
    found
}

/// Reports that `what` (a program, a file, a capability) is missing; `install` says how
/// to get it. Under `CI=true` this panics, failing the test; otherwise it writes a loud
/// notice straight to stderr (past the test harness's capture) and returns, and the test
/// returns without running.
pub fn missing(what: &str, install: &str) {
    if in_ci() {
        panic!("{what} is missing, and CI=true: the test must run ({install})");
    }
    let bar = "#".repeat(70);
    let notice = format!(
        "\n{bar}\n## SKIPPED: {what} is missing ({install}).\n\
         ## This test did NOT run. Under CI=true a missing tool fails instead.\n{bar}\n"
    );
    let _ = std::io::stderr().write_all(notice.as_bytes());
}

/// The path of `program` on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// The path of `program` on `PATH`, for a tool that is not a Debian package and that a
/// machine may lack (Terraform): without it the test is skipped with the loud notice,
/// under CI too; `install` says where it comes from.
pub fn optional_tool(program: &str, install: &str) -> Option<PathBuf> {
    let found = on_path(program);
    if found.is_none() {
        let bar = "#".repeat(70);
        let notice = format!(
            "\n{bar}\n## SKIPPED: {program} is not on PATH ({install}).\n\
             ## This test did NOT run.\n{bar}\n"
        );
        let _ = std::io::stderr().write_all(notice.as_bytes());
    }
    found
}

/// Whether `python3` can import `module` (a pip package the tests drive, such as aioquic);
/// if not, [`missing`] says so with `install` (a failure under CI).
pub fn python_module(module: &str, install: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        missing(&format!("python3 with {module}"), install);
    }
    ok
}
