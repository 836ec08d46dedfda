//! The NexRTC network in the lab: a 3-member etcd cluster and a controller in each of
//! three regions, relays in every region, each process in its region's namespace — what
//! `tests/lab_regions.rs` runs and `nexrtc-lab up --network` starts by hand.
//!
//! | host | address | |
//! |---|---|---|
//! | etcd member | 10.k.0.10:2379 (peers :2380) | control regions only |
//! | controller | 10.k.0.20:8080 (plain HTTP) | control regions only |
//! | relay `r<i>` | 10.k.1.i:3478 (UDP, TCP), ops :9641 | every region |
//!
//! The controllers share the etcd cluster, bootstrap the plan's regions (name and
//! coordinates), one tenant and the keys of [`Keys`]; each relay's agent lists the
//! controllers nearest first. Processes write their logs to `dir`, and are killed when
//! the [`Network`] is dropped (and with the lab process at the latest).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{Lab, LabError};

/// The credentials the controllers are bootstrapped with.
#[derive(Debug, Clone)]
pub struct Keys {
    pub admin: String,
    pub node: String,
    /// Scopes `ice` and `client_ip` of `tenant`.
    pub ice: String,
    pub tenant: String,
    pub tenant_secret: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            admin: "nxk_labadmin000000000000000000000000000000".into(),
            node: "nxk_labnode0000000000000000000000000000000".into(),
            ice: "nxk_labice00000000000000000000000000000000".into(),
            tenant: "lab".into(),
            tenant_secret: "lab-secret-0123456789".into(),
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The `nexrtc` binary.
    pub nexrtc: PathBuf,
    /// The `etcd` binary (`etcd` on PATH by default).
    pub etcd: PathBuf,
    /// The controllers' GeoIP database.
    pub geoip: Option<PathBuf>,
    /// Where data directories, configuration files and logs go.
    pub dir: PathBuf,
    /// Regions with an etcd member and a controller (3 or 5).
    pub control: Vec<String>,
    pub relays_per_region: u8,
    pub keys: Keys,
}

impl NetworkConfig {
    /// us-east, eu-west and ap-northeast as control regions, 2 relays per region.
    pub fn new(nexrtc: PathBuf, dir: PathBuf) -> NetworkConfig {
        NetworkConfig {
            nexrtc,
            etcd: PathBuf::from("etcd"),
            geoip: None,
            dir,
            control: vec!["us-east".into(), "eu-west".into(), "ap-northeast".into()],
            relays_per_region: 2,
            keys: Keys::default(),
        }
    }
}

/// One process of the network and how it was started.
#[derive(Debug)]
struct Proc {
    child: Child,
    log: PathBuf,
    region: String,
    program: PathBuf,
    args: Vec<String>,
}

/// The running network (see the module docs).
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    procs: BTreeMap<String, Proc>,
    /// Controller base URL by control region.
    controllers: BTreeMap<String, String>,
}

fn failed(message: String) -> LabError {
    LabError::Failed(message)
}

impl Network {
    /// Starts etcd, waits until every member is healthy, starts the controllers, waits
    /// until each is ready, starts the relays and waits until every controller lists
    /// them all (each wait bounded by 60 s).
    pub fn start(lab: &Lab, config: NetworkConfig) -> Result<Network, LabError> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| failed(format!("{}: {e}", config.dir.display())))?;
        let mut net = Network {
            config,
            procs: BTreeMap::new(),
            controllers: BTreeMap::new(),
        };
        net.start_etcd(lab)?;
        net.start_controllers(lab)?;
        net.start_relays(lab)?;
        Ok(net)
    }

    fn k(lab: &Lab, region: &str) -> Result<u8, LabError> {
        lab.plan()
            .index(region)
            .ok_or_else(|| LabError::UnknownRegion(region.to_owned()))
    }

    fn spawn(
        &mut self,
        lab: &Lab,
        name: &str,
        region: &str,
        program: &Path,
        args: Vec<String>,
    ) -> Result<(), LabError> {
        let log = self.config.dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| failed(format!("{}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| failed(format!("{}: {e}", log.display())))?;
        let mut cmd = lab.command(lab.region_ns(region)?, &program.to_string_lossy());
        cmd.args(&args).stdin(Stdio::null()).stdout(out).stderr(err);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .map_err(|e| failed(format!("{name}: {}: {e}", program.display())))?;
        let proc = Proc {
            child,
            log,
            region: region.to_owned(),
            program: program.to_owned(),
            args,
        };
        self.procs.insert(name.to_owned(), proc);
        Ok(())
    }

    /// `curl ARGS` in `region`'s namespace: its output when it succeeded.
    pub fn curl(&self, lab: &Lab, region: &str, args: &[&str]) -> Option<String> {
        let out = lab
            .command(lab.region_ns(region).ok()?, "curl")
            .args(["--max-time", "5"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls `ok` every 200 ms for up to `limit`: how long it took, or an error naming
    /// `what` (with the tail of every log that shows a dead process).
    pub fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        mut ok: impl FnMut(&Network) -> bool,
    ) -> Result<Duration, LabError> {
        let start = Instant::now();
        while !ok(self) {
            if start.elapsed() > limit {
                return Err(failed(format!(
                    "{what}: not within {limit:?}{}",
                    self.dead_logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(start.elapsed())
    }

    /// The last lines of the logs of processes that exited.
    fn dead_logs(&mut self) -> String {
        let mut out = String::new();
        for (name, p) in self.procs.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                out.push_str(&format!("\n---- {name} exited ({status}) ----\n{tail}"));
            }
        }
        out
    }

    fn start_etcd(&mut self, lab: &Lab) -> Result<(), LabError> {
        let mut cluster = Vec::new();
        for region in &self.config.control {
            let k = Self::k(lab, region)?;
            cluster.push(format!("e{k}=http://10.{k}.0.10:2380"));
        }
        for region in self.config.control.clone() {
            let k = Self::k(lab, &region)?;
            let ip = Ipv4Addr::new(10, k, 0, 10);
            lab.add_address(&region, ip)?;
            let data = self.config.dir.join(format!("etcd-{region}"));
            // A fresh cluster: nothing from an earlier run in the same directory.
            if data.exists() {
                std::fs::remove_dir_all(&data)
                    .map_err(|e| failed(format!("{}: {e}", data.display())))?;
            }
            let args = vec![
                format!("--name=e{k}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-peer-urls=http://{ip}:2380"),
                format!("--initial-advertise-peer-urls=http://{ip}:2380"),
                format!("--listen-client-urls=http://{ip}:2379"),
                format!("--advertise-client-urls=http://{ip}:2379"),
                format!("--initial-cluster={}", cluster.join(",")),
                "--initial-cluster-token=nexrtc-lab".into(),
                "--initial-cluster-state=new".into(),
                // Members up to 255 ms apart: heartbeats at about the RTT, elections 10×.
                "--heartbeat-interval=250".into(),
                "--election-timeout=2500".into(),
                "--log-level=warn".into(),
            ];
            let etcd = self.config.etcd.clone();
            self.spawn(lab, &format!("etcd-{region}"), &region, &etcd, args)?;
        }
        // A leader elected before the controllers start.
        for region in self.config.control.clone() {
            let url = format!("http://10.{}.0.10:2379/health", Self::k(lab, &region)?);
            self.wait(
                &format!("etcd {region} healthy"),
                Duration::from_secs(60),
                |n| {
                    n.curl(lab, &region, &["-sf", &url])
                        .is_some_and(|t| t.contains("\"true\""))
                },
            )?;
        }
        Ok(())
    }

    fn start_controllers(&mut self, lab: &Lab) -> Result<(), LabError> {
        let mut endpoints = Vec::new();
        for region in &self.config.control {
            endpoints.push(format!("\"http://10.{}.0.10:2379\"", Self::k(lab, region)?));
        }
        let regions: String = (lab.plan().regions.iter())
            .map(|r| {
                format!(
                    "\n[[bootstrap.regions]]\nname = \"{}\"\nlat = {}\nlon = {}\n",
                    r.name, r.lat, r.lon
                )
            })
            .collect();
        let geoip = (self.config.geoip.as_ref())
            .map(|p| format!("geoip_db = \"{}\"\n", p.display()))
            .unwrap_or_default();
        let keys = self.config.keys.clone();
        for region in self.config.control.clone() {
            let ip = Ipv4Addr::new(10, Self::k(lab, &region)?, 0, 20);
            lab.add_address(&region, ip)?;
            let url = format!("http://{ip}:8080");
            let config = format!(
                "listen = \"{ip}:8080\"\ninsecure_http = true\nadvertise_url = \"{url}\"\n\
                 etcd_endpoints = [{}]\n{geoip}startup_timeout_secs = 60\n\n\
                 [bootstrap]\nadmin_key = \"{}\"\nnode_key = \"{}\"\nice_key = \"{}\"\n\
                 tenant = \"{}\"\ntenant_secret = \"{}\"\n{regions}",
                endpoints.join(", "),
                keys.admin,
                keys.node,
                keys.ice,
                keys.tenant,
                keys.tenant_secret
            );
            let path = self.config.dir.join(format!("controller-{region}.toml"));
            std::fs::write(&path, config)
                .map_err(|e| failed(format!("{}: {e}", path.display())))?;
            let args = vec![
                "controller".into(),
                "--config".into(),
                path.display().to_string(),
            ];
            let nexrtc = self.config.nexrtc.clone();
            self.spawn(lab, &format!("controller-{region}"), &region, &nexrtc, args)?;
            self.controllers.insert(region, url);
        }
        for (region, url) in self.controllers.clone() {
            let ready = format!("{url}/readyz");
            self.wait(
                &format!("controller {region} ready"),
                Duration::from_secs(60),
                |n| {
                    n.curl(lab, &region, &["-sf", "-o", "/dev/null", &ready])
                        .is_some()
                },
            )?;
        }
        Ok(())
    }

    fn start_relays(&mut self, lab: &Lab) -> Result<(), LabError> {
        let names: Vec<String> = lab.plan().regions.iter().map(|r| r.name.clone()).collect();
        let keys = self.config.keys.clone();
        for region in &names {
            let k = Self::k(lab, region)?;
            let controllers = self.controllers_from(lab, region).join(",");
            for i in 1..=self.config.relays_per_region {
                let ip = Ipv4Addr::new(10, k, 1, i).to_string();
                lab.add_address(region, Ipv4Addr::new(10, k, 1, i))?;
                let args: Vec<String> = [
                    "relay",
                    "--listening-ip",
                    &ip,
                    "--relay-ip",
                    &ip,
                    "--listening-port",
                    "3478",
                    "--no-tls",
                    "--min-port",
                    "50000",
                    "--max-port",
                    "50999",
                    "--realm",
                    "lab",
                    "--static-auth-secret",
                    &keys.tenant_secret,
                    "--metrics-listen",
                    &format!("{ip}:9641"),
                    "--drain-grace",
                    "1",
                    "--controller",
                    &controllers,
                    "--node-token",
                    &keys.node,
                    "--region",
                    region,
                    "--node",
                    &format!("r{i}"),
                    // Peers in the lab are on private addresses.
                    "--allowed-peer-ip",
                    "10.0.0.0/8",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                let nexrtc = self.config.nexrtc.clone();
                self.spawn(lab, &format!("relay-{region}-{i}"), region, &nexrtc, args)?;
            }
        }
        let total = names.len() * usize::from(self.config.relays_per_region);
        let control = self.config.control.clone();
        self.wait(
            &format!("{total} relays registered on every controller"),
            Duration::from_secs(60),
            |n| {
                control
                    .iter()
                    .all(|c| n.relays(lab, c).is_some_and(|r| r.len() == total))
            },
        )?;
        Ok(())
    }

    /// Controller base URLs by control region.
    pub fn controllers(&self) -> &BTreeMap<String, String> {
        &self.controllers
    }

    /// Controller URLs, nearest `region` first (by the plan's RTT).
    pub fn controllers_from(&self, lab: &Lab, region: &str) -> Vec<String> {
        let mut list: Vec<(f64, &String)> = (self.controllers.iter())
            .map(|(r, url)| (lab.plan().rtt(region, r).unwrap_or(f64::MAX), url))
            .collect();
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
        list.into_iter().map(|(_, u)| u.clone()).collect()
    }

    /// Forgets a controller (a test that killed it and no longer asks it).
    pub fn forget_controller(&mut self, region: &str) {
        self.controllers.remove(region);
    }

    pub fn keys(&self) -> &Keys {
        &self.config.keys
    }

    /// `<region>/<node>` of every relay controller `control` lists (`None`: it did not
    /// answer).
    pub fn relays(&self, lab: &Lab, control: &str) -> Option<Vec<String>> {
        let url = format!("{}/v1/admin/relays", self.controllers.get(control)?);
        let auth = format!("Authorization: Bearer {}", self.config.keys.admin);
        let text = self.curl(lab, control, &["-sf", &url, "-H", &auth])?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let id = |r: &serde_json::Value| r["id"].as_str().map(str::to_owned);
        Some(v.as_array()?.iter().filter_map(id).collect())
    }

    /// Names of the processes (`etcd-<region>`, `controller-<region>`,
    /// `relay-<region>-<i>`).
    pub fn processes(&self) -> Vec<String> {
        self.procs.keys().cloned().collect()
    }

    /// kill -9 one process.
    pub fn kill(&mut self, name: &str) -> Result<(), LabError> {
        let p = (self.procs.get_mut(name)).ok_or_else(|| failed(format!("no process {name}")))?;
        let _ = p.child.kill();
        let _ = p.child.wait();
        Ok(())
    }

    /// Starts a killed process again, as it was started.
    pub fn restart(&mut self, lab: &Lab, name: &str) -> Result<(), LabError> {
        let p = (self.procs.remove(name)).ok_or_else(|| failed(format!("no process {name}")))?;
        self.spawn(lab, name, &p.region, &p.program, p.args)
    }

    /// The last `lines` of a process's log.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = (self.procs.get(name))
            .and_then(|p| std::fs::read_to_string(&p.log).ok())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for (name, p) in self.procs.iter_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
            if !panicking && name.starts_with("etcd-") {
                // etcd preallocates its write-ahead log (64 MB a member): the logs stay,
                // the data goes.
                let _ = std::fs::remove_dir_all(self.config.dir.join(name));
            }
            if panicking {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                eprintln!(
                    "---- last lines of {name} ({}) ----\n{tail}",
                    p.log.display()
                );
            }
        }
    }
}
