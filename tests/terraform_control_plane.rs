//! The control-plane module's output, run: Terraform renders a 3-member etcd cluster
//! and a controller (members on 127.0.0.11-13, the controller on 127.0.0.21, all with
//! certificates of a CA made here), the files of each machine's cloud-init are written
//! where they say (into this test's directory), three real etcd processes start from
//! the rendered ETCD_* settings and form a cluster over TLS, and the controller starts
//! from the rendered controller.toml, reaches etcd over TLS with its client certificate,
//! and keeps working when one member is killed.
//!
//! Needs `terraform` (skipped loudly without it, also under CI), etcd and curl.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use serde_json::{json, Value};
use support::{free_port, optional_tool, require_tool, terraform, ChildGuard};

const TERRAFORM: &str = "Terraform >= 1.6 from HashiCorp's releases";
const MEMBERS: [(&str, &str); 3] = [
    ("etcd1", "127.0.0.11"),
    ("etcd2", "127.0.0.12"),
    ("etcd3", "127.0.0.13"),
];
const CONTROLLER_IP: &str = "127.0.0.21";

/// A CA and a signer of leaf certificates, as PEM.
struct Ca {
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "control-plane test CA");
        let cert = p.self_signed(&key).expect("CA");
        Ca { key, cert }
    }

    /// (certificate, key) for `ip`, with the given extended key usages.
    fn leaf(
        &self,
        cn: &str,
        ip: Option<&str>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        // etcd checks a peer's certificate against the address the peer connects from;
        // on loopback every member connects from 127.0.0.1 (on real hosts, from its own
        // address), so the members' certificates also name 127.0.0.1.
        let sans: Vec<String> = ip
            .map(|i| vec![i.to_owned(), "127.0.0.1".to_owned()])
            .unwrap_or_default();
        let mut p = CertificateParams::new(sans).expect("params");
        p.extended_key_usages = usages;
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes every `write_files` entry of a cloud-config document that goes below
/// `scratch` (the module was given this test's directories) and returns path → content.
fn write_files(user_data: &str, scratch: &Path) -> BTreeMap<String, String> {
    let files = support::cloud_config_files(scratch, "user-data", user_data);
    for (path, content) in &files {
        if Path::new(path).starts_with(scratch) {
            let p = Path::new(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, content).expect("write");
        }
    }
    files
}

/// `curl` against the controller's HTTPS API, trusting the test CA.
fn api(ca: &Path, url: &str, method: &str, key: &str, body: Option<&Value>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "5",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ])
    .arg("--cacert")
    .arg(ca)
    .args(["-H", &format!("Authorization: Bearer {key}")]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn the_rendered_control_plane_runs_etcd_over_tls_and_a_controller_on_it() {
    if optional_tool("terraform", TERRAFORM).is_none() {
        return;
    }
    let Some(etcd_bin) = require_tool("etcd", "etcd-server") else {
        return;
    };
    if require_tool("curl", "curl").is_none() {
        return;
    }
    let dir: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("terraform-control-plane-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let scratch = dir.join("machines");
    std::fs::create_dir_all(&scratch).expect("dir");

    // Certificates: members serve clients and each other (server and client auth).
    let ca = Ca::new();
    let both = || {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    };
    let members: BTreeMap<&str, (String, String)> = MEMBERS
        .iter()
        .map(|(n, ip)| (*n, ca.leaf(n, Some(ip), both())))
        .collect();
    let client = ca.leaf(
        "nexrtc-controller",
        None,
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    let api_cert = ca.leaf(
        "c1",
        Some(CONTROLLER_IP),
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let port = free_port();
    let url = format!("https://{CONTROLLER_IP}:{port}");

    let vars = json!({
        "etcd_members": MEMBERS.iter().map(|(n, ip)| (n.to_string(), json!(ip))).collect::<serde_json::Map<_, _>>(),
        "controllers": { "c1": { "ip": CONTROLLER_IP, "url": url } },
        "api_port": port,
        "tenant": "acme",
        "config_dir": scratch.join("c1/nexrtc"),
        "etcd_dir": scratch.join("etcd/tls"),
        "etcd_data_dir": scratch.join("etcd/data"),
        "controller_options": { "listen": format!("{CONTROLLER_IP}:{port}") },
        "tls": {
            "ca_pem": ca.cert.pem(),
            "etcd_member_pem": members.iter().map(|(n, (c, _))| (n.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "etcd_client_pem": client.0,
            "controller_api_pem": { "c1": api_cert.0 },
        },
        "tls_keys": {
            "etcd_member": members.iter().map(|(n, (_, k))| (n.to_string(), json!(k))).collect::<serde_json::Map<_, _>>(),
            "etcd_client": client.1,
            "controller_api": { "c1": api_cert.1 },
        },
    });
    std::fs::write(dir.join("terraform.tfvars.json"), vars.to_string()).expect("tfvars");
    let module = support::module_source(
        &dir,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("terraform/modules/control-plane"),
    );
    std::fs::write(
        dir.join("main.tf"),
        format!(
            "variable \"etcd_members\" {{ type = map(string) }}\n\
             variable \"controllers\" {{ type = map(object({{ ip = string, url = string }})) }}\n\
             variable \"api_port\" {{ type = number }}\n\
             variable \"tenant\" {{ type = string }}\n\
             variable \"config_dir\" {{ type = string }}\n\
             variable \"etcd_dir\" {{ type = string }}\n\
             variable \"etcd_data_dir\" {{ type = string }}\n\
             variable \"controller_options\" {{ type = any }}\n\
             variable \"tls\" {{ type = any }}\n\
             variable \"tls_keys\" {{\n  type = any\n  sensitive = true\n}}\n\
             module \"cp\" {{\n  source = {module:?}\n  etcd_members = var.etcd_members\n  controllers = var.controllers\n\
               api_port = var.api_port\n  tenant = var.tenant\n  config_dir = var.config_dir\n  etcd_dir = var.etcd_dir\n\
               etcd_data_dir = var.etcd_data_dir\n  controller_options = var.controller_options\n  tls = var.tls\n  tls_keys = var.tls_keys\n}}\n\
             output \"cp\" {{\n  value = {{ etcd_user_data = module.cp.etcd_user_data, etcd_environment = module.cp.etcd_environment, \
               controller_user_data = module.cp.controller_user_data, keys = module.cp.keys }}\n  sensitive = true\n}}\n"
        ),
    )
    .expect("main.tf");
    let data = dir.join(".terraform");
    for args in [
        &["init", "-backend=false", "-input=false"][..],
        &["apply", "-auto-approve", "-input=false", "-no-color"][..],
    ] {
        let run = terraform(&dir, &data, args);
        assert!(run.success, "terraform {args:?}:\n{}", run.output);
    }
    let run = terraform(&dir, &data, &["output", "-json"]);
    assert!(run.success, "{}", run.output);
    let out: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let cp = &out["cp"]["value"];

    // The members' files, then three etcd processes with the rendered settings.
    let mut etcds = Vec::new();
    for (name, ip) in MEMBERS {
        write_files(
            cp["etcd_user_data"][name].as_str().expect("user data"),
            &scratch,
        );
        std::fs::create_dir_all(scratch.join("etcd/data")).expect("data dir");
        let mut cmd = Command::new(&etcd_bin);
        for line in cp["etcd_environment"][name].as_str().expect("env").lines() {
            let (k, v) = line.split_once('=').expect("KEY=VALUE");
            cmd.env(k, v);
        }
        cmd.env("ETCD_LOG_LEVEL", "warn");
        etcds.push((
            name,
            ip,
            ChildGuard::spawn(&format!("etcd-{name}"), &mut cmd),
        ));
    }
    let healthy = |ip: &str| {
        Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "1",
                &format!("http://{ip}:2381/health"),
            ])
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("true")
            })
    };
    let took = wait(
        "a healthy 3-member cluster",
        Duration::from_secs(30),
        || MEMBERS.iter().all(|(_, ip)| healthy(ip)),
    );
    println!("etcd cluster healthy after {:.2} s", took.as_secs_f64());

    // The controller from its rendered configuration.
    let files = write_files(
        cp["controller_user_data"]["c1"]
            .as_str()
            .expect("user data"),
        &scratch,
    );
    let config = scratch.join("c1/nexrtc/controller.toml");
    assert!(files.contains_key(config.to_str().expect("utf-8 path")));
    let check = Command::new(env!("CARGO_BIN_EXE_nexrtc"))
        .args(["controller", "--config"])
        .arg(&config)
        .arg("--check-config")
        .output()
        .expect("nexrtc");
    assert!(
        check.status.success(),
        "--check-config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut controller = ChildGuard::spawn(
        "nexrtc-controller",
        Command::new(env!("CARGO_BIN_EXE_nexrtc"))
            .args(["controller", "--config"])
            .arg(&config),
    );
    let ca_file = scratch.join("c1/nexrtc/tls/ca.crt");
    let admin = cp["keys"]["admin_key"]
        .as_str()
        .expect("admin key")
        .to_owned();
    let ready = format!("{url}/readyz");
    let took = wait(
        "the controller ready on etcd over TLS",
        Duration::from_secs(30),
        || {
            assert!(
                controller.exited().is_none(),
                "controller exited: {}",
                controller.log_tail(30)
            );
            api(&ca_file, &ready, "GET", "", None).0 == 200
        },
    );
    println!("controller ready after {:.2} s", took.as_secs_f64());

    // Writes go through the cluster, also with one member gone.
    let region = |name: &str| format!("{url}/v1/admin/regions/{name}");
    let body = json!({"lat": 50.1, "lon": 8.7});
    let (code, text) = api(&ca_file, &region("eu-central"), "PUT", &admin, Some(&body));
    assert_eq!(code, 200, "PUT a region: {text}");
    let (name, _, mut first) = etcds.remove(0);
    first.kill();
    println!("killed {name}");
    // A write may meet the dead member or a leader election first: it is answered 503
    // store_unavailable ("retry later"), and a retry gets through on the other two.
    // With a member gone, the controller sends a call again when the member it reached
    // refused the connection; what it cannot resend safely (a leader election, say) is
    // answered 503 store_unavailable ("retry later"), and a client's retry gets through
    // the other two. Every request of a sequence must succeed within a few retries.
    let started = Instant::now();
    let mut retries = 0;
    for i in 0..10 {
        let (method, name, b) = match i % 2 {
            0 => ("PUT", format!("r{i}"), Some(&body)),
            _ => ("GET", "eu-central".to_owned(), None),
        };
        let mut tries = 0;
        loop {
            let (code, text) = api(&ca_file, &region(&name), method, &admin, b);
            if code == 200 {
                break;
            }
            assert!(
                code == 503 && text.contains("store_unavailable"),
                "{method} {name} with 2 of 3 members: {code} {text}"
            );
            tries += 1;
            assert!(tries < 20, "{method} {name}: still 503 after {tries} tries");
            std::thread::sleep(Duration::from_millis(250));
        }
        retries += tries;
    }
    println!(
        "10 requests with 2 of 3 members in {:.2} s, {retries} retried after a 503",
        started.elapsed().as_secs_f64()
    );
    let (code, _) = api(&ca_file, &region("eu-central"), "GET", "nxk_wrong", None);
    assert_eq!(code, 401, "the keys are the rendered ones");
    let _ = std::fs::remove_dir_all(&dir);
}
