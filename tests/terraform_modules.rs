//! The Terraform code under `terraform/`: formatted, valid, its module test suites
//! pass (`terraform test`, which applies), and what the region module renders is
//! accepted by the programs it is for: `nexrtc relay --check-config` takes each
//! node's relay.toml with its environment, `nft --check` takes the host firewall,
//! `sh -n` the scripts, and the unit it installs is the packaged one.
//!
//! Needs `terraform` (skipped loudly without it, also under CI).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{optional_tool, require_tool};

const TERRAFORM: &str = "Terraform >= 1.6 from HashiCorp's releases";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("terraform")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// Runs terraform in `chdir` with its data directory under `data`; panics with its
/// output unless it succeeds; returns stdout.
fn terraform(chdir: &Path, data: &Path, args: &[&str]) -> String {
    let run = support::terraform(chdir, data, args);
    assert!(
        run.success,
        "terraform {args:?} in {} failed:\n{}",
        chdir.display(),
        run.output
    );
    run.stdout
}

/// Every provider-free root and module: (directory, has a test suite).
const CONFIGURATIONS: &[(&str, bool)] = &[
    ("terraform/modules/region", true),
    ("terraform/modules/registration", false),
    ("terraform/modules/host", false),
    ("terraform/modules/control-plane", true),
    ("terraform/examples/local", false),
];

#[test]
fn terraform_code_is_formatted_valid_and_its_module_tests_pass() {
    if optional_tool("terraform", TERRAFORM).is_none() {
        return;
    }
    let terraform_dir = root().join("terraform");
    terraform(
        &terraform_dir,
        &work_dir("fmt"),
        &["fmt", "-check", "-recursive", "-diff"],
    );
    for (dir, has_tests) in CONFIGURATIONS {
        let data = work_dir(&dir.replace('/', "-"));
        let path = root().join(dir);
        terraform(&path, &data, &["init", "-backend=false", "-input=false"]);
        let out = terraform(&path, &data, &["validate", "-no-color"]);
        assert!(out.contains("The configuration is valid"), "{dir}: {out}");
        if *has_tests {
            let out = terraform(&path, &data, &["test", "-no-color"]);
            assert!(out.contains(", 0 failed"), "{dir}: {out}");
            assert!(!out.contains(" 0 passed"), "{dir} ran its tests: {out}");
            println!("{dir}: {}", out.lines().last().unwrap_or(""));
        }
    }
    // Nothing of a run is left in the source tree.
    for (dir, _) in CONFIGURATIONS {
        for leftover in [".terraform", ".terraform.lock.hcl", "terraform.tfstate"] {
            assert!(
                !root().join(dir).join(leftover).exists(),
                "{dir}/{leftover} left in the source tree"
            );
        }
    }
}

/// The modules' own copies of packaged files are the packaged files.
#[test]
fn the_modules_install_the_packaged_units_and_user() {
    for (copy, packaged) in [
        (
            "region/files/nexrtc-relay.service",
            "packaging/systemd/nexrtc-relay.service",
        ),
        ("host/files/nexrtc.conf", "packaging/sysusers/nexrtc.conf"),
        (
            "control-plane/files/nexrtc-controller.service",
            "packaging/systemd/nexrtc-controller.service",
        ),
    ] {
        let a = std::fs::read_to_string(root().join("terraform/modules").join(copy)).expect(copy);
        let b = std::fs::read_to_string(root().join(packaged)).expect(packaged);
        assert!(
            a == b,
            "terraform/modules/{copy} differs from {packaged}: copy it over"
        );
    }
}

const RENDER_ROOT: &str = r#"
module "region" {
  source          = "MODULE"
  name            = "eu-west-1"
  location        = { lat = 53.35, lon = -6.26 }
  node_count      = 2
  controller_urls = ["https://api1.example.org", "https://api2.example.org"]
  node_token      = "nxk_0123456789abcdefghijklmnopqrstuvwxyzABCD"
  realm           = "turn.example.org"
  capacity        = 5000
  advertise_host  = { relay1 = "relay1.example.org" }
  relay_options   = { user_quota = 32, denied_peer_ip = ["198.51.100.0/24"], listening_ip = ["127.0.0.1"], relay_ip = ["127.0.0.1"] }
  node_overrides  = { relay2 = { listening_port = 3479, metrics_listen = "127.0.0.1:9642" } }
  metrics_cidrs   = ["10.0.0.0/8", "fd00::/8"]
  ssh_cidrs       = ["192.0.2.0/24"]
}
output "nodes" {
  value     = module.region.nodes
  sensitive = true
}
output "autoscaling_user_data" {
  value     = module.region.autoscaling_user_data
  sensitive = true
}
output "nftables" {
  value = module.region.nftables
}
"#;

#[test]
fn what_the_region_module_renders_is_accepted_by_nexrtc_nft_and_sh() {
    if optional_tool("terraform", TERRAFORM).is_none() {
        return;
    }
    let dir = work_dir("render");
    let module = root().join("terraform/modules/region");
    std::fs::write(
        dir.join("main.tf"),
        RENDER_ROOT.replace("MODULE", &support::module_source(&dir, &module)),
    )
    .expect("rendered output");
    let data = dir.join(".terraform");
    terraform(&dir, &data, &["init", "-backend=false", "-input=false"]);
    terraform(
        &dir,
        &data,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    let outputs: Value =
        serde_json::from_str(&terraform(&dir, &data, &["output", "-json"])).expect("JSON");

    let nodes = outputs["nodes"]["value"].as_object().expect("nodes");
    assert_eq!(nodes.len(), 2);
    for (name, node) in nodes {
        // relay.toml and the agent's environment, as the unit would start them.
        let toml = dir.join(format!("{name}.toml"));
        std::fs::write(&toml, node["relay_toml"].as_str().expect("rendered output"))
            .expect("write");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
        cmd.arg("relay").arg("--config").arg(&toml);
        for arg in node["relay_args"].as_array().expect("rendered output") {
            cmd.arg(arg.as_str().expect("rendered output"));
        }
        cmd.arg("--check-config");
        for (k, v) in node["environment"].as_object().expect("rendered output") {
            if k != "NEXRTC_RELAY_ARGS" {
                cmd.env(k, v.as_str().expect("rendered output"));
            }
        }
        let out = cmd.output().expect("nexrtc");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{name}: nexrtc relay --check-config refused the rendered configuration:\n{}\n{text}",
            node["relay_toml"]
        );
        assert!(
            text.contains("edge agent"),
            "{name}: the agent is configured: {text}"
        );
        assert!(
            !text.contains("nxk_0123456789"),
            "{name}: token printed: {text}"
        );

        // The user data is cloud-config YAML whose files are the outputs.
        let user_data = node["user_data"].as_str().expect("rendered output");
        assert!(user_data.starts_with("#cloud-config\n"), "{name}");
        let files = support::cloud_config_files(&dir, name, user_data);
        assert_eq!(
            Some(files["/etc/nexrtc/relay.toml"].as_str()),
            node["relay_toml"].as_str(),
            "{name}"
        );
        let env_file = files["/etc/default/nexrtc-relay"].as_str();
        assert!(
            env_file.contains(&format!("NEXRTC_NODE={name}\n")),
            "{env_file}"
        );
        assert_eq!(
            files["/etc/systemd/system/nexrtc-relay.service"].as_str(),
            std::fs::read_to_string(root().join("packaging/systemd/nexrtc-relay.service"))
                .expect("rendered output")
        );
        let drain = files["/etc/systemd/system/nexrtc-relay.service.d/drain.conf"].as_str();
        assert!(drain.contains("TimeoutStopSec=330\n"), "{drain}");
    }

    // The autoscaling template: the same without a node name.
    let template = outputs["autoscaling_user_data"]["value"]
        .as_str()
        .expect("rendered output");
    let files = support::cloud_config_files(&dir, "template", template);
    let env_file = files["/etc/default/nexrtc-relay"].as_str();
    assert!(!env_file.contains("NEXRTC_NODE="), "{env_file}");

    // Shell scripts parse.
    for script in [
        root().join("terraform/modules/region/files/discover-addresses.sh"),
        root().join("terraform/modules/region/files/lifecycle-watch.sh"),
        root().join("terraform/modules/region/files/load-metric.sh"),
        root().join("terraform/modules/registration/register.sh"),
        root().join("terraform/examples/local/node.sh"),
    ] {
        let ok = Command::new("sh")
            .arg("-n")
            .arg(&script)
            .status()
            .expect("rendered output");
        assert!(ok.success(), "sh -n {}", script.display());
    }

    // The host firewall is a ruleset nft accepts.
    let nft = dir.join("relay.nft");
    std::fs::write(
        &nft,
        outputs["nftables"]["value"]
            .as_str()
            .expect("rendered output"),
    )
    .expect("write");
    if require_tool("nft", "nftables").is_some() {
        let out = Command::new("nft")
            .arg("--check")
            .arg("-f")
            .arg(&nft)
            .output()
            .expect("rendered output");
        assert!(
            out.status.success(),
            "nft --check refused the ruleset:\n{}\n{}",
            std::fs::read_to_string(&nft).expect("rendered output"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The cloud wrappers cannot be validated without their providers: parsed with
/// python-hcl2, they must pass the region module's user data through unchanged and
/// open exactly its firewall rules (tests/terraform/check_wrappers.py).
#[test]
fn the_cloud_wrappers_pass_the_region_module_through() {
    let Some(python) = require_tool("python3", "python3") else {
        return;
    };
    let has_hcl2 = Command::new(&python)
        .args(["-c", "import hcl2"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_hcl2 {
        support::missing("python-hcl2", "pip install python-hcl2==8.1.4");
        return;
    }
    support::run_ok(
        "the cloud wrappers' check",
        Command::new(&python)
            .arg(root().join("tests/terraform/check_wrappers.py"))
            .arg(root().join("terraform")),
    );
}
