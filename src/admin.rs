//! `nexrtc admin …`: the controller's admin API from a shell or a script (Terraform's
//! provisioners use it): regions, relays and their drain, tenants and their secrets, API
//! keys, revocations. Text for people, `--output json` (the API's own answer) for programs.
//! An API error prints its `code` and `message` and exits 1; a usage or configuration
//! error exits 2.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use nexrtc_edge_agent::tls::{client_config, Trust};
use nexrtc_edge_agent::Url;
use serde_json::{json, Value};

/// Exit code of a refused configuration (as the other commands).
const EXIT_CONFIG: u8 = 2;

#[derive(Args)]
pub struct AdminArgs {
    /// Controller base URL.
    #[arg(
        long,
        value_name = "URL",
        env = "NEXRTC_CONTROLLER",
        default_value = "http://127.0.0.1:8080"
    )]
    controller: Url,
    /// The admin key (nxk_…).
    #[arg(
        long,
        value_name = "KEY",
        env = "NEXRTC_ADMIN_KEY",
        hide_env_values = true,
        conflicts_with = "admin_key_file"
    )]
    admin_key: Option<String>,
    /// Read the admin key from FILE: the key alone, or a controller configuration
    /// (`[bootstrap] admin_key`, as `nexrtc controller init` writes it).
    #[arg(long, value_name = "FILE")]
    admin_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for the controller, besides the system's.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// How to print answers.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Lines for people.
    Text,
    /// The API's JSON answer.
    Json,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Regions: where relays are, for ranking.
    #[command(subcommand)]
    Regions(Regions),
    /// Relays in the registry, and draining them.
    #[command(subcommand)]
    Relays(Relays),
    /// Tenants.
    #[command(subcommand)]
    Tenants(Tenants),
    /// A tenant's TURN REST secrets.
    #[command(subcommand)]
    Secrets(Secrets),
    /// API keys.
    #[command(subcommand)]
    Keys(Keys),
    /// Revoke a TURN username (`<expiry>:<tenant>:<user>`): its allocations end on
    /// every relay.
    Revoke { username: String },
    /// The audit log: admin changes, newest first (who, what, when, from where).
    Audit {
        /// Only entries at or after this Unix time (seconds).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Most entries (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum Regions {
    List,
    Get {
        name: String,
    },
    /// Create or update a region.
    Put {
        name: String,
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// Above 1 makes the region look farther in the ranking.
        #[arg(long, default_value_t = 1.0)]
        score_multiplier: f64,
    },
    /// Delete a region (its relays are no longer offered).
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum Relays {
    List {
        #[arg(long)]
        region: Option<String>,
    },
    /// Drain a relay, or every relay of a region: no new allocations, out of the ICE
    /// answers; each exits when its last allocation ends or the deadline passes.
    Drain {
        region: String,
        node: Option<String>,
        /// Seconds until the relays exit even with clients left.
        #[arg(long, value_name = "SECS")]
        deadline: Option<u64>,
        /// Wait until the drained relays have left the registry (they exited), at most
        /// SECS seconds; exit 1 if some are still there.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
}

#[derive(Subcommand)]
enum Tenants {
    List,
    Get {
        name: String,
    },
    /// Create a tenant; its first secret is random unless given.
    Create {
        name: String,
        #[arg(long)]
        secret: Option<String>,
        /// An origin allowed to use the tenant's credentials (repeatable).
        #[arg(long = "cors-origin", value_name = "ORIGIN")]
        cors_origins: Vec<String>,
    },
    Delete {
        name: String,
    },
    /// A tenant's usage per region: allocation and tunnel minutes, bytes each way.
    Usage {
        name: String,
        /// From this Unix time (seconds; default: an hour before --to).
        #[arg(long)]
        from: Option<u64>,
        /// Up to this Unix time (seconds; default: now).
        #[arg(long)]
        to: Option<u64>,
        /// Bucket width in seconds, a multiple of 60.
        #[arg(long, default_value_t = 60)]
        step: u64,
        /// Only this region.
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Subcommand)]
enum Secrets {
    /// Add a secret (random unless given): relays accept both until the old is deleted.
    Add {
        tenant: String,
        #[arg(long)]
        value: Option<String>,
    },
    Delete {
        tenant: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum Keys {
    List,
    /// Create a key; its secret is printed once.
    Create {
        /// A scope (admin, ice, node, …), repeatable.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        name: String,
        /// Limit the key to one tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    Delete {
        id: String,
    },
}

/// One admin API call: method, path, body.
struct Call {
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
}

fn call(method: reqwest::Method, path: impl Into<String>, body: Option<Value>) -> Call {
    Call {
        method,
        path: path.into(),
        body,
    }
}

/// A failed call: the API's error, or no answer.
enum Failure {
    Api {
        status: u16,
        code: String,
        message: String,
    },
    Transport(String),
}

struct Client {
    http: reqwest::Client,
    base: Url,
    key: String,
}

impl Client {
    async fn send(&self, c: &Call) -> Result<Value, Failure> {
        let url = self
            .base
            .join(c.path.trim_start_matches('/'))
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let mut req = self
            .http
            .request(c.method.clone(), url)
            .bearer_auth(&self.key);
        if let Some(body) = &c.body {
            req = req.json(body);
        }
        let answer = req
            .send()
            .await
            .map_err(|e| Failure::Transport(format!("{}: {e}", self.base)))?;
        let status = answer.status().as_u16();
        let text = answer
            .text()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let value: Value = match text.trim().is_empty() {
            true => Value::Null,
            false => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        };
        match status {
            200..=299 => Ok(value),
            _ => Err(Failure::Api {
                status,
                code: value["code"].as_str().unwrap_or("http_error").to_owned(),
                message: value["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("HTTP {status}")),
            }),
        }
    }
}

pub fn run(args: AdminArgs) -> ExitCode {
    let key = match admin_key(&args) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("nexrtc admin: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut base = args.controller.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    let http = match client_config(&Trust::default(), args.ca_file.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|tls| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(Duration::from_secs(15))
                .user_agent(concat!("nexrtc-admin/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        }) {
        Ok(http) => http,
        Err(e) => {
            eprintln!("nexrtc admin: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let client = Client { http, base, key };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nexrtc admin: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(&client, args.command, args.output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Api {
            status,
            code,
            message,
        }) => {
            eprintln!("nexrtc admin: {code} (HTTP {status}): {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Transport(e)) => {
            eprintln!("nexrtc admin: no answer from the controller: {e}");
            ExitCode::FAILURE
        }
    }
}

fn admin_key(args: &AdminArgs) -> Result<String, String> {
    let key = match (&args.admin_key, &args.admin_key_file) {
        (Some(key), _) => key.trim().to_owned(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--admin-key-file {}: {e}", path.display()))?;
            key_from_file(&text).ok_or_else(|| {
                format!(
                    "--admin-key-file {}: no key in it (expected the key alone, or a \
                     controller configuration with [bootstrap] admin_key)",
                    path.display()
                )
            })?
        }
        (None, None) => String::new(),
    };
    match key.is_empty() {
        true => Err("no admin key: give --admin-key, NEXRTC_ADMIN_KEY or --admin-key-file".into()),
        false => Ok(key),
    }
}

/// The key of a key file: a controller configuration's `[bootstrap] admin_key`, or the
/// file's one non-empty line.
fn key_from_file(text: &str) -> Option<String> {
    if let Ok(table) = text.parse::<toml::Table>() {
        if let Some(key) = table
            .get("bootstrap")
            .and_then(|b| b.get("admin_key"))
            .and_then(|k| k.as_str())
        {
            return Some(key.to_owned());
        }
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next()) {
        (Some(line), None) if !line.contains(['=', ' ']) => Some(line.to_owned()),
        _ => None,
    }
}

fn seg(s: &str) -> String {
    // Path segments are names the API checks (a-z 0-9 - _); percent-encode the rest.
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn execute(client: &Client, command: AdminCommand, output: Output) -> Result<(), Failure> {
    use reqwest::Method;
    let (request, text): (Call, fn(&Value) -> String) = match command {
        AdminCommand::Regions(Regions::List) => {
            (call(Method::GET, "/v1/admin/regions", None), regions)
        }
        AdminCommand::Regions(Regions::Get { name }) => (
            call(
                Method::GET,
                format!("/v1/admin/regions/{}", seg(&name)),
                None,
            ),
            region,
        ),
        AdminCommand::Regions(Regions::Put {
            name,
            lat,
            lon,
            score_multiplier,
        }) => (
            call(
                Method::PUT,
                format!("/v1/admin/regions/{}", seg(&name)),
                Some(json!({"lat": lat, "lon": lon, "score_multiplier": score_multiplier})),
            ),
            region,
        ),
        AdminCommand::Regions(Regions::Delete { name }) => (
            call(
                Method::DELETE,
                format!("/v1/admin/regions/{}", seg(&name)),
                None,
            ),
            |_| "deleted".to_owned(),
        ),
        AdminCommand::Relays(Relays::List { region }) => {
            let path = match region {
                Some(r) => format!("/v1/admin/relays?region={}", seg(&r)),
                None => "/v1/admin/relays".to_owned(),
            };
            (call(Method::GET, path, None), relays)
        }
        AdminCommand::Relays(Relays::Drain {
            region,
            node,
            deadline,
            wait,
        }) => {
            let path = match &node {
                Some(n) => format!("/v1/admin/relays/{}/{}/drain", seg(&region), seg(n)),
                None => format!("/v1/admin/relays/{}/drain", seg(&region)),
            };
            let body = deadline.map(|d| json!({"deadline_secs": d}));
            let answer = client.send(&call(Method::POST, path, body)).await?;
            print(&answer, output, |a| {
                let list: Vec<&str> = a["drained"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!(
                    "draining: {}",
                    if list.is_empty() {
                        "none".to_owned()
                    } else {
                        list.join(" ")
                    }
                )
            });
            if let Some(secs) = wait {
                let drained: Vec<String> = answer["drained"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                return wait_gone(client, &drained, Duration::from_secs(secs), output).await;
            }
            return Ok(());
        }
        AdminCommand::Tenants(Tenants::List) => {
            (call(Method::GET, "/v1/admin/tenants", None), tenants)
        }
        AdminCommand::Tenants(Tenants::Get { name }) => (
            call(
                Method::GET,
                format!("/v1/admin/tenants/{}", seg(&name)),
                None,
            ),
            pretty,
        ),
        AdminCommand::Tenants(Tenants::Create {
            name,
            secret,
            cors_origins,
        }) => {
            let mut body = json!({"name": name, "cors_origins": cors_origins});
            if let Some(s) = secret {
                body["secret"] = json!(s);
            }
            (call(Method::POST, "/v1/admin/tenants", Some(body)), pretty)
        }
        AdminCommand::Tenants(Tenants::Delete { name }) => (
            call(
                Method::DELETE,
                format!("/v1/admin/tenants/{}", seg(&name)),
                None,
            ),
            |_| "deleted".to_owned(),
        ),
        AdminCommand::Tenants(Tenants::Usage {
            name,
            from,
            to,
            step,
            region,
        }) => {
            let mut query = format!("step={step}");
            for (k, v) in [("from", from), ("to", to)] {
                if let Some(v) = v {
                    query.push_str(&format!("&{k}={v}"));
                }
            }
            if let Some(r) = region {
                query.push_str(&format!("&region={}", seg(&r)));
            }
            (
                call(
                    Method::GET,
                    format!("/v1/admin/tenants/{}/usage?{query}", seg(&name)),
                    None,
                ),
                usage,
            )
        }
        AdminCommand::Secrets(Secrets::Add { tenant, value }) => (
            call(
                Method::POST,
                format!("/v1/admin/tenants/{}/secrets", seg(&tenant)),
                Some(match value {
                    Some(v) => json!({"value": v}),
                    None => json!({}),
                }),
            ),
            pretty,
        ),
        AdminCommand::Secrets(Secrets::Delete { tenant, id }) => (
            call(
                Method::DELETE,
                format!("/v1/admin/tenants/{}/secrets/{}", seg(&tenant), seg(&id)),
                None,
            ),
            |_| "deleted".to_owned(),
        ),
        AdminCommand::Keys(Keys::List) => (call(Method::GET, "/v1/admin/keys", None), keys),
        AdminCommand::Keys(Keys::Create {
            scopes,
            name,
            tenant,
        }) => (
            call(
                Method::POST,
                "/v1/admin/keys",
                Some(json!({"name": name, "tenant": tenant, "scopes": scopes})),
            ),
            pretty,
        ),
        AdminCommand::Keys(Keys::Delete { id }) => (
            call(Method::DELETE, format!("/v1/admin/keys/{}", seg(&id)), None),
            |_| "deleted".to_owned(),
        ),
        AdminCommand::Audit { since, limit } => (
            call(
                Method::GET,
                format!("/v1/admin/audit?since={since}&limit={limit}"),
                None,
            ),
            audit,
        ),
        AdminCommand::Revoke { username } => (
            call(
                Method::POST,
                "/v1/admin/revocations",
                Some(json!({"username": username})),
            ),
            |_| "revoked".to_owned(),
        ),
    };
    let answer = client.send(&request).await?;
    print(&answer, output, text);
    Ok(())
}

/// Polls the registry until none of `drained` (`region/node`) is in it.
async fn wait_gone(
    client: &Client,
    drained: &[String],
    limit: Duration,
    output: Output,
) -> Result<(), Failure> {
    let start = Instant::now();
    loop {
        let list = client
            .send(&call(reqwest::Method::GET, "/v1/admin/relays", None))
            .await?;
        let left: Vec<String> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .filter(|id| drained.contains(id))
            .collect();
        if left.is_empty() {
            if output == Output::Text {
                println!(
                    "drained and gone after {:.1} s",
                    start.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(Failure::Api {
                status: 0,
                code: "still_registered".to_owned(),
                message: format!(
                    "after {}s still registered: {}",
                    limit.as_secs(),
                    left.join(" ")
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print(answer: &Value, output: Output, text: fn(&Value) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_else(|_| answer.to_string())
        ),
        Output::Text => println!("{}", text(answer)),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn region(r: &Value) -> String {
    format!(
        "{}\tlat {}\tlon {}\tscore x{}",
        r["name"].as_str().unwrap_or("?"),
        r["lat"],
        r["lon"],
        r["score_multiplier"]
    )
}

fn regions(v: &Value) -> String {
    lines(v, region)
}

fn relays(v: &Value) -> String {
    lines(v, |r| {
        format!(
            "{}\t{}\tallocations {}\tload {:.2}\t{}",
            r["id"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            r["load"]["allocations"],
            r["load_fraction"].as_f64().unwrap_or(0.0),
            r["version"].as_str().unwrap_or("?"),
        )
    })
}

fn audit(v: &Value) -> String {
    lines(v, |e| {
        let name = e["key_name"].as_str().filter(|n| !n.is_empty());
        let key = e["key_id"].as_str().unwrap_or("?");
        format!(
            "{}\t{} {}\t{}\tkey {}\tfrom {}",
            e["at_ms"]
                .as_u64()
                .map_or("?".to_owned(), |ms| (ms / 1000).to_string()),
            e["method"].as_str().unwrap_or("?"),
            e["path"].as_str().unwrap_or("?"),
            e["status"],
            name.unwrap_or(key.get(..12).unwrap_or(key)),
            e["from"].as_str().unwrap_or("-"),
        )
    })
}

/// One line per bucket (start, region, allocation and tunnel minutes, bytes to peers and
/// to clients, tab-separated), then one total line per region.
fn usage(v: &Value) -> String {
    let row = |label: String, r: &Value| {
        format!(
            "{label}\t{}\t{}\t{}\t{}\t{}",
            r["region"].as_str().unwrap_or("?"),
            r["allocation_minutes"],
            r["tunnel_minutes"],
            r["bytes_to_peer"],
            r["bytes_to_client"],
        )
    };
    let mut out = vec![
        "start\tregion\tallocation_minutes\ttunnel_minutes\tbytes_to_peer\tbytes_to_client"
            .to_owned(),
    ];
    for b in v["buckets"].as_array().into_iter().flatten() {
        out.push(row(b["start"].to_string(), b));
    }
    for t in v["totals"].as_array().into_iter().flatten() {
        out.push(row("total".to_owned(), t));
    }
    if out.len() == 1 {
        return "(no use in the window)".to_owned();
    }
    out.join("\n")
}

fn tenants(v: &Value) -> String {
    lines(v, |t| t["name"].as_str().unwrap_or("?").to_owned())
}

fn keys(v: &Value) -> String {
    lines(v, |k| {
        format!(
            "{}\t{}\t{}",
            k["id"].as_str().unwrap_or("?"),
            k["name"].as_str().unwrap_or(""),
            k["scopes"]
        )
    })
}

fn lines(v: &Value, line: fn(&Value) -> String) -> String {
    let list: Vec<String> = v.as_array().into_iter().flatten().map(line).collect();
    match list.is_empty() {
        true => "(none)".to_owned(),
        false => list.join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_a_key_or_a_controller_configuration() {
        assert_eq!(key_from_file("nxk_abc\n").as_deref(), Some("nxk_abc"));
        assert_eq!(
            key_from_file("listen = \"127.0.0.1:8080\"\n[bootstrap]\nadmin_key = \"nxk_admin\"\nnode_key = \"nxk_node\"\n")
                .as_deref(),
            Some("nxk_admin")
        );
        assert_eq!(key_from_file("a\nb\n"), None);
        assert_eq!(key_from_file("listen = \"x\"\n"), None);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("eu-west_1"), "eu-west_1");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
