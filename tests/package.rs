//! The Debian package and its systemd units (`packaging/`, `[package.metadata.deb]`):
//!
//! * both units pass `systemd-analyze verify` without a word, and keep their
//!   hardening (`systemd-analyze security` exposure);
//! * the relay unit waits longer than the relay's default drain grace;
//! * the `.deb` built from the debug binary (`cargo deb --no-build`, no release
//!   build) has the control fields, files, modes and conffiles it should, installs
//!   into a throwaway root (`dpkg --root`, maintainer scripts run chrootless with
//!   `DPKG_ROOT`: the host system is not touched, but for the `systemctl daemon-reload`
//!   that cargo-deb's postrm fragment runs on a host booted with systemd), creates the `nexrtc` user, runs
//!   as a relay and as a controller from its installed configuration, and removes
//!   and purges cleanly.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nexrtc_test_support::tools::{missing, require_tool};
use support::{
    free_port, http_get, random_token, rest_credentials, run_ok, slot, ChildGuard, TurnClient,
};

const UNITS: [&str; 3] = [
    "nexrtc-relay.service",
    "nexrtc-controller.service",
    "nexrtc-dns.service",
];
/// The cargo-deb version `.ci/run` installs.
const CARGO_DEB_INSTALL: &str = "cargo install cargo-deb --locked --version 3.8.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn unit_path(unit: &str) -> PathBuf {
    repo().join("packaging/systemd").join(unit)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory under the target's tmp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(random_token(what));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `systemd-analyze verify` checks that ExecStart exists: verify copies whose
/// `/usr/bin/nexrtc` is the binary just built (same file names, as the unit name
/// comes from the file name). Any output at all is a warning and fails.
#[test]
fn units_verify_without_warnings() {
    let Some(analyze) = require_tool("systemd-analyze", "systemd") else {
        return;
    };
    let dir = TempDir::new("units-verify-");
    for unit in UNITS {
        let text = std::fs::read_to_string(unit_path(unit)).expect("read unit");
        let exec = text
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .unwrap_or_else(|| panic!("{unit}: no ExecStart"));
        let subcommand = unit
            .trim_start_matches("nexrtc-")
            .trim_end_matches(".service");
        // `nexrtc dns` reads the controller's file.
        let file = if subcommand == "dns" {
            "controller"
        } else {
            subcommand
        };
        assert!(
            exec.starts_with(&format!(
                "ExecStart=/usr/bin/nexrtc {subcommand} --config /etc/nexrtc/{file}.toml"
            )),
            "{unit}: {exec}"
        );
        let copy = dir.0.join(unit);
        std::fs::write(
            &copy,
            text.replace("/usr/bin/nexrtc", env!("CARGO_BIN_EXE_nexrtc")),
        )
        .expect("write unit copy");
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("run systemd-analyze verify");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {unit} ({}):\n{said}",
            out.status
        );
    }
}

/// The hardening stays: `systemd-analyze security` rates both units' exposure
/// at most 2.0 ("OK"; 1.6 when written), read from the unit files offline.
#[test]
fn units_stay_hardened() {
    let Some(analyze) = require_tool("systemd-analyze", "systemd") else {
        return;
    };
    for unit in UNITS {
        let unit_text = std::fs::read_to_string(unit_path(unit)).expect("read unit");
        let out = run_ok(
            "systemd-analyze security",
            Command::new(&analyze)
                .args(["security", "--offline=true", "--no-pager"])
                .arg(unit_path(unit)),
        );
        let text = stdout(&out);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no overall exposure level in:\n{text}"));
        assert!(level <= 2.0, "{unit}: exposure {level}:\n{text}");
        for key in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK\n",
            "SystemCallFilter=@system-service",
            "User=nexrtc",
            "StateDirectory=nexrtc",
            "EnvironmentFile=-/etc/default/",
        ] {
            assert!(unit_text.contains(key), "{unit}: no {key:?}");
        }
    }
}

/// Stopping the relay drains it for up to `--drain-grace` (its default under a
/// service manager is in `nexrtc relay --help`): systemd must not SIGKILL it
/// before that, so TimeoutStopSec is above the grace, with a margin. The relay
/// reloads on SIGHUP; the controller does not handle SIGHUP, so it has no reload.
#[test]
fn relay_unit_outlasts_the_drain_grace() {
    let help = run_ok(
        "nexrtc relay --help",
        Command::new(env!("CARGO_BIN_EXE_nexrtc")).args(["relay", "--help"]),
    );
    let help = stdout(&help);
    let grace_help: String = help
        .split("--drain-grace")
        .nth(1)
        .expect("--drain-grace in the help")
        .split("--")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let grace: u64 = grace_help
        .split("else ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no service-manager default in: {grace_help}"));

    let unit = std::fs::read_to_string(unit_path("nexrtc-relay.service")).expect("read unit");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("nexrtc-relay.service: no {key}"))
            .to_owned()
    };
    let timeout: u64 = value("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        timeout >= grace + 10,
        "TimeoutStopSec={timeout} leaves no margin over the default drain grace {grace} s"
    );
    assert_eq!(value("KillSignal"), "SIGTERM");
    assert_eq!(value("KillMode"), "mixed");
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(
        unit.contains(&format!("default {grace} s")),
        "the unit's comments give the drain grace TimeoutStopSec is sized for ({grace} s)"
    );

    let controller =
        std::fs::read_to_string(unit_path("nexrtc-controller.service")).expect("read unit");
    assert!(!controller.contains("ExecReload="));
}

/// Where cargo-deb is: on PATH, else in cargo's bin directory.
fn cargo_deb() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("cargo-deb"))
            .find(|p| p.is_file())
    });
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let found = on_path.or_else(|| {
        cargo_home
            .map(|h| h.join("bin/cargo-deb"))
            .filter(|p| p.is_file())
    });
    if found.is_none() {
        missing("cargo-deb", CARGO_DEB_INSTALL);
    }
    found
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// `dpkg` on the throwaway root: maintainer scripts run on the host, not
/// chrooted (the root has no shell), with DPKG_ROOT pointing at it; the
/// dependencies (libc6, systemd) are the host's, not the root's.
fn dpkg(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("dpkg");
    cmd.arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    run_ok(&format!("dpkg {}", args.join(" ")), &mut cmd)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn group_id(root: &Path, name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string(root.join("etc/group")).ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1).and_then(|g| g.parse().ok()))
            .flatten()
    })
}

#[test]
fn deb_builds_installs_runs_and_purges() {
    let Some(cargo_deb) = cargo_deb() else { return };
    for (tool, package) in [
        ("dpkg-deb", "dpkg"),
        ("dpkg-statoverride", "dpkg"),
        ("strip", "binutils"),
        ("systemd-sysusers", "systemd"),
        ("deb-systemd-helper", "init-system-helpers"),
    ] {
        if require_tool(tool, package).is_none() {
            return;
        }
    }
    if !is_root() {
        missing(
            "root (dpkg --root installs files owned by root and the nexrtc group)",
            "run the tests as root, as .ci/run does",
        );
        return;
    }
    let dir = TempDir::new("package-");

    // 1. Build the .deb from the debug binary: cargo-deb reads `target/release/nexrtc`
    //    in the metadata as $CARGO_TARGET_DIR/release/nexrtc, here a link to it.
    let target = dir.0.join("target");
    std::fs::create_dir_all(target.join("release")).expect("mkdir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nexrtc"), target.join("release/nexrtc"))
        .expect("link the binary");
    let out_dir = dir.0.join("out");
    let started = Instant::now();
    let built = run_ok(
        "cargo deb",
        Command::new(&cargo_deb)
            .args(["deb", "--no-build", "--strip", "--no-dbgsym", "--fast"])
            .arg("--manifest-path")
            .arg(repo().join("Cargo.toml"))
            .arg("--output")
            .arg(&out_dir)
            .env("CARGO_TARGET_DIR", &target),
    );
    let build_time = started.elapsed();
    let warnings = String::from_utf8_lossy(&built.stderr);
    assert!(
        !warnings.contains("warning"),
        "cargo deb warned:\n{warnings}"
    );
    let version = env!("CARGO_PKG_VERSION");
    let arch = stdout(&run_ok(
        "dpkg --print-architecture",
        Command::new("dpkg").arg("--print-architecture"),
    ))
    .trim()
    .to_owned();
    let deb = out_dir.join(format!("nexrtc_{version}-1_{arch}.deb"));
    assert!(deb.is_file(), "no {}", deb.display());
    eprintln!(
        "cargo deb: {} in {:.1} s",
        deb.display(),
        build_time.as_secs_f64()
    );

    // 2. Its control fields.
    let field = |name: &str| {
        stdout(&run_ok(
            "dpkg-deb -f",
            Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name),
        ))
        .trim()
        .to_owned()
    };
    assert_eq!(field("Package"), "nexrtc");
    assert_eq!(field("Version"), format!("{version}-1"));
    assert_eq!(field("Architecture"), arch);
    assert_eq!(field("Section"), "net");
    assert!(
        field("Maintainer").contains('<'),
        "Maintainer: name <email>"
    );
    let depends = field("Depends");
    assert!(
        depends.contains("libc6 (>=") && depends.contains("systemd"),
        "Depends: {depends}"
    );
    let conffiles = stdout(&run_ok(
        "dpkg-deb -I conffiles",
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
    ));
    let mut conffiles: Vec<&str> = conffiles.lines().map(str::trim).collect();
    conffiles.sort_unstable();
    assert_eq!(
        conffiles,
        [
            "/etc/default/nexrtc-controller",
            "/etc/default/nexrtc-dns",
            "/etc/default/nexrtc-relay",
            "/etc/nexrtc/controller.toml",
            "/etc/nexrtc/relay.toml",
        ]
    );

    // 3. Its files and their modes (`dpkg-deb --contents`: mode owner size date time path).
    let contents = stdout(&run_ok(
        "dpkg-deb --contents",
        Command::new("dpkg-deb").arg("--contents").arg(&deb),
    ));
    let entry = |path: &str| -> String {
        contents
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{contents}"))
            .to_owned()
    };
    for (path, perms) in [
        ("usr/bin/nexrtc", "-rwxr-xr-x"),
        ("usr/lib/systemd/system/nexrtc-relay.service", "-rw-r--r--"),
        (
            "usr/lib/systemd/system/nexrtc-controller.service",
            "-rw-r--r--",
        ),
        ("usr/lib/systemd/system/nexrtc-dns.service", "-rw-r--r--"),
        ("usr/lib/sysusers.d/nexrtc.conf", "-rw-r--r--"),
        ("etc/nexrtc/relay.toml", "-rw-r-----"),
        ("etc/nexrtc/controller.toml", "-rw-r-----"),
        ("etc/default/nexrtc-relay", "-rw-------"),
        ("etc/default/nexrtc-controller", "-rw-------"),
        ("etc/default/nexrtc-dns", "-rw-------"),
        ("usr/share/doc/nexrtc/README.md", "-rw-r--r--"),
        ("usr/share/doc/nexrtc/LICENSE", "-rw-r--r--"),
        ("usr/share/doc/nexrtc/copyright", "-rw-r--r--"),
    ] {
        let line = entry(path);
        let mut fields = line.split_whitespace();
        assert_eq!(
            (fields.next(), fields.next()),
            (Some(perms), Some("0/0")),
            "{path}: {line}"
        );
    }

    // 4. Install into a throwaway root.
    let root = dir.0.join("root");
    let admin = root.join("var/lib/dpkg");
    for sub in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(sub)).expect("mkdir admindir");
    }
    std::fs::write(admin.join("status"), "").expect("status");
    let deb_arg = deb.to_str().expect("utf-8 path");
    dpkg(&root, &["--install", deb_arg]);
    let status = stdout(&dpkg(&root, &["--status", "nexrtc"]));
    assert!(status.contains("Status: install ok installed"), "{status}");

    let installed = root.join("usr/bin/nexrtc");
    assert_eq!(format!("{:o}", mode(&installed)), "755");
    for unit in UNITS {
        assert_eq!(
            std::fs::read(root.join("usr/lib/systemd/system").join(unit)).expect("unit"),
            std::fs::read(unit_path(unit)).expect("unit"),
            "{unit} is installed as written"
        );
        assert!(
            !root
                .join("etc/systemd/system/multi-user.target.wants")
                .join(unit)
                .exists(),
            "{unit} is not enabled at install"
        );
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("nexrtc:"))
        .unwrap_or_else(|| panic!("no nexrtc user in\n{passwd}"));
    assert!(
        user.ends_with(":/var/lib/nexrtc:/usr/sbin/nologin"),
        "{user}"
    );
    let gid = group_id(&root, "nexrtc").expect("a nexrtc group");
    for (path, want) in [
        ("etc/nexrtc", 0o750),
        ("etc/nexrtc/relay.toml", 0o640),
        ("etc/nexrtc/controller.toml", 0o640),
    ] {
        let meta = std::fs::metadata(root.join(path)).expect(path);
        assert_eq!(
            (
                meta.uid(),
                meta.gid(),
                format!("{:o}", mode(&root.join(path)))
            ),
            (0, gid, format!("{want:o}")),
            "{path}: root:nexrtc {want:o}"
        );
    }
    assert_eq!(
        format!("{:o}", mode(&root.join("etc/default/nexrtc-relay"))),
        "600"
    );

    // 5. The installed binary runs, as a relay from the installed configuration
    //    with a realm and a secret added (the shipped file holds comments only).
    let version_out = stdout(&run_ok(
        "nexrtc --version",
        Command::new(&installed).arg("--version"),
    ));
    assert_eq!(version_out.trim(), format!("nexrtc {version}"));

    let config = root.join("etc/nexrtc/relay.toml");
    let shipped = std::fs::read_to_string(&config).expect("relay.toml");
    assert!(
        shipped
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "the shipped relay.toml sets nothing:\n{shipped}"
    );
    let secret = random_token("s");
    let port = free_port();
    let (min_port, _) = support::slot_ports(slot::PACKAGE);
    std::fs::write(
        &config,
        format!(
            "{shipped}\nrealm = \"package.test\"\nstatic_auth_secret = \"{secret}\"\n\
             listening_ip = \"127.0.0.1\"\nlistening_port = {port}\nno_tls = true\n\
             metrics_listen = \"127.0.0.1:0\"\nmin_port = {min_port}\nmax_port = 65535\n"
        ),
    )
    .expect("write relay.toml");
    let mut relay = ChildGuard::spawn(
        "packaged-relay",
        Command::new(&installed)
            .arg("relay")
            .arg("--config")
            .arg(&config),
    );
    let server: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, port).into();
    let (username, password) = rest_credentials(&secret, "pkg");
    let mut client = TurnClient::udp(server, &username, &password)
        .with_timeouts(Duration::from_millis(200), Duration::from_secs(20));
    assert_eq!(
        client.allocate().code(),
        200,
        "Allocate with the secret of the installed relay.toml:\n{}",
        relay.log_tail(20)
    );
    // Stop as systemd does (SIGTERM): a drain, the allocation held; a second
    // SIGTERM ends it.
    let signal = |pid: u32| {
        run_ok(
            "kill -TERM",
            Command::new("kill").args(["-TERM", &pid.to_string()]),
        )
    };
    signal(relay.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !relay.log_text().contains("draining") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        relay.log_text().contains("draining"),
        "{}",
        relay.log_tail(20)
    );
    assert!(
        relay.exited().is_none(),
        "the relay drains, it does not exit"
    );
    signal(relay.pid());
    let status = relay
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the second SIGTERM did not stop the relay"));
    assert_eq!(status.code(), Some(0), "{}", relay.log_tail(20));
    drop(client);

    // The controller starts from its installed file as shipped (embedded store),
    // and stops on SIGTERM.
    let listen: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, free_port()).into();
    let mut controller = ChildGuard::spawn(
        "packaged-controller",
        Command::new(&installed)
            .arg("controller")
            .arg("--config")
            .arg(root.join("etc/nexrtc/controller.toml"))
            .arg("--listen")
            .arg(listen.to_string()),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if matches!(http_get(listen, "/healthz"), Ok((200, _))) {
            break;
        }
        assert!(
            Instant::now() < deadline && controller.exited().is_none(),
            "the installed controller did not answer /healthz:\n{}",
            controller.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(controller.pid());
    let status = controller
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("SIGTERM did not stop the controller"));
    assert_eq!(status.code(), Some(0), "{}", controller.log_tail(20));

    // 6. Remove: the program and the units go, the configuration stays.
    dpkg(&root, &["--remove", "nexrtc"]);
    assert!(!installed.exists());
    for unit in UNITS {
        assert!(!root.join("usr/lib/systemd/system").join(unit).exists());
    }
    assert!(config.exists(), "remove keeps the conffiles");

    // 7. Purge: nothing of the package is left but the nexrtc user.
    dpkg(&root, &["--purge", "nexrtc"]);
    for gone in [
        "etc/nexrtc",
        "etc/default/nexrtc-relay",
        "etc/default/nexrtc-dns",
        "var/lib/nexrtc",
        "usr/bin",
    ] {
        assert!(!root.join(gone).exists(), "{gone} is left after purge");
    }
    let status = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--status", "nexrtc"])
        .output()
        .expect("dpkg --status");
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        !status.status.success() || said.contains("not-installed"),
        "after purge: {said}"
    );
}
