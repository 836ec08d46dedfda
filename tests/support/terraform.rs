//! Terraform as the tests run it: in a configuration directory of the source tree, with
//! its working data (`.terraform`, state) elsewhere, no CLI configuration file and no
//! colour.

use std::path::Path;
use std::process::Command;

/// What a finished `terraform` run printed.
#[derive(Debug)]
pub struct TerraformRun {
    pub success: bool,
    pub stdout: String,
    /// stdout and stderr together, for failure messages.
    pub output: String,
}

/// Runs `terraform ARGS` in `chdir` with `TF_DATA_DIR=data`.
pub fn terraform(chdir: &Path, data: &Path, args: &[&str]) -> TerraformRun {
    let out = Command::new("terraform")
        .arg(format!("-chdir={}", chdir.display()))
        .args(args)
        .env("TF_DATA_DIR", data)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("TF_IN_AUTOMATION", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("run terraform");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let output = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    TerraformRun {
        success: out.status.success(),
        stdout,
        output,
    }
}
