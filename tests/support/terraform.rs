//! Terraform as the tests run it: in a configuration directory of the source tree, with
//! its working data (`.terraform`, state) elsewhere, no CLI configuration file and no
//! colour.

use std::collections::BTreeMap;
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

/// How a configuration in `from` names the module at `module`: a relative path (up to
/// `/`, then down), so that Terraform uses the module where it is, with its sibling
/// modules (an absolute path would be copied alone, without them).
pub fn module_source(from: &Path, module: &Path) -> String {
    let up = "../".repeat(from.components().count().saturating_sub(1));
    let down = module.strip_prefix("/").expect("an absolute module path");
    format!("{up}{}", down.display())
}

/// The `write_files` of a cloud-config document, path → content, read by a YAML parser
/// of its own (Python's PyYAML); `name` names the scratch file written into `dir`.
pub fn cloud_config_files(dir: &Path, name: &str, user_data: &str) -> BTreeMap<String, String> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, user_data).expect("write the user data");
    let out = super::run_ok(
        &format!("{name}: reading it as YAML cloud-config"),
        Command::new("python3")
            .arg("-c")
            .arg(
                "import json, sys, yaml\n\
                 doc = yaml.safe_load(open(sys.argv[1]))\n\
                 print(json.dumps({f['path']: f['content'] for f in doc['write_files']}))",
            )
            .arg(&path),
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
}
