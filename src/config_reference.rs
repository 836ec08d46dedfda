//! `nexrtc config-reference` (hidden): the configuration reference
//! (`docs/config-reference.md`) and the default configuration files
//! (`packaging/etc/nexrtc/relay.toml`, `packaging/etc/nexrtc/controller.toml`),
//! rendered from the code so that they cannot drift from it:
//!
//! * the relay's keys from its flags' clap metadata
//!   ([`nexrtc_relay::settings::keys`]: name, help, default, environment);
//! * the edge agent's flags from theirs ([`AgentConfig`] and `nexrtc agent`'s own);
//! * the controller's keys from its one table
//!   ([`nexrtc_controller::config::keys::KEYS`]), with the flag of each key
//!   from [`nexrtc_controller::ControllerArgs`].
//!
//! `tests/config_reference.rs` fails when a committed file differs from what
//! this renders, and runs the default files with every key uncommented
//! through `--check-config`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgAction, Args as _, CommandFactory as _};
use nexrtc_controller::config::keys::{KeyDefault as CKeyDefault, KEYS};
use nexrtc_edge_agent::AgentConfig;
use nexrtc_relay::settings::keys::{self as relay_keys, KeyDefault};

/// The command that regenerates the committed files (from the repository's root).
pub const REGENERATE: &str = "cargo run -p nexrtc -- config-reference --write .";

/// Where each rendering goes, relative to the repository's root.
pub const MARKDOWN_PATH: &str = "docs/config-reference.md";
pub const RELAY_TOML_PATH: &str = "packaging/etc/nexrtc/relay.toml";
pub const CONTROLLER_TOML_PATH: &str = "packaging/etc/nexrtc/controller.toml";

#[derive(clap::Args)]
pub struct ReferenceArgs {
    /// What to print.
    #[arg(long, value_enum, default_value = "markdown")]
    format: Format,
    /// Write all three files under DIR (the repository's root) instead.
    #[arg(long, value_name = "DIR", conflicts_with = "format")]
    write: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// docs/config-reference.md
    Markdown,
    /// packaging/etc/nexrtc/relay.toml
    RelayToml,
    /// packaging/etc/nexrtc/controller.toml
    ControllerToml,
}

pub fn run(args: ReferenceArgs) -> ExitCode {
    let Some(root) = args.write else {
        print!(
            "{}",
            match args.format {
                Format::Markdown => markdown(),
                Format::RelayToml => relay_toml(),
                Format::ControllerToml => controller_toml(),
            }
        );
        return ExitCode::SUCCESS;
    };
    for (path, text) in [
        (MARKDOWN_PATH, markdown()),
        (RELAY_TOML_PATH, relay_toml()),
        (CONTROLLER_TOML_PATH, controller_toml()),
    ] {
        if let Err(e) = write(&root.join(path), &text) {
            eprintln!("nexrtc config-reference: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote {}", root.join(path).display());
    }
    ExitCode::SUCCESS
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

/// A flag as the reference shows it.
struct Flag {
    id: String,
    usage: String,
    help: String,
    default: Option<String>,
    env: Option<String>,
}

fn flags(command: &clap::Command) -> Vec<Flag> {
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_long().is_some())
        .map(|a| {
            let switch = matches!(a.get_action(), ArgAction::SetTrue);
            let value = match (switch, a.get_value_names().and_then(|v| v.first())) {
                (false, Some(v)) => format!(" {v}"),
                _ => String::new(),
            };
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let help = a.get_long_help().or(a.get_help()).map(|h| h.to_string());
            let (help, stated) = relay_keys::split_default(&one_line(&help.unwrap_or_default()));
            let default = match stated {
                Some(text) => Some(cell(&text)),
                None if switch => Some("off".to_owned()),
                None if a.is_hide_default_value_set() || defaults.is_empty() => None,
                None => Some(code(&defaults.join(","))),
            };
            Flag {
                id: a.get_id().to_string(),
                usage: format!("--{}{value}", a.get_long().unwrap_or_default()),
                help,
                default,
                env: a.get_env().map(|e| e.to_string_lossy().into_owned()),
            }
        })
        .collect()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table cell: one line, no bare `|`.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

fn relay_default(d: &KeyDefault) -> String {
    match d {
        KeyDefault::Value(v) => code(v),
        KeyDefault::Described { text, .. } => cell(text),
        KeyDefault::Unset { required: true, .. } => "required".to_owned(),
        KeyDefault::Unset { .. } => "none".to_owned(),
    }
}

fn controller_default(d: &CKeyDefault) -> String {
    match d {
        CKeyDefault::Value(v) => code(v),
        CKeyDefault::Described { text, .. } => cell(text),
        CKeyDefault::Unset { .. } => "none".to_owned(),
    }
}

/// `docs/config-reference.md`.
pub fn markdown() -> String {
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line("# Configuration reference");
    line("");
    line("<!-- Generated from the code by `nexrtc config-reference`: do not edit. Regenerate with");
    line(&format!(
        "     `{REGENERATE}`\n     (tests/config_reference.rs fails while it is stale). -->"
    ));
    line("");
    line("Every key of `nexrtc relay` and `nexrtc controller`, and every flag of the edge agent,");
    line("with its default. The relay's come from its flags' definitions, the controller's from");
    line("the table its configuration code is tested against (`controller/src/config/keys.rs`).");
    line("How the pieces fit together, with examples: [configuration.md](configuration.md).");
    line("");
    line("Default files with every key commented out (its default, or an example where there is");
    line("none) are generated from the same source:");
    line(&format!(
        "`{RELAY_TOML_PATH}` and `{CONTROLLER_TOML_PATH}` (installed as"
    ));
    line("`/etc/nexrtc/relay.toml` and `/etc/nexrtc/controller.toml`).");
    line("");
    line("Check a configuration before starting or restarting with it: the same command with");
    line("`--check-config` (`nexrtc relay --config /etc/nexrtc/relay.toml --check-config`). It");
    line("loads and checks everything a start would that needs no network (the file, the flags,");
    line("the secrets file, the TLS certificate and key, the agent's token file, the GeoIP");
    line("database), prints a one-line summary without secrets and exits 0, or prints the error");
    line("a start would (naming the key, and the line in a file) and exits 2. It binds no socket");
    line("and contacts no controller or etcd: a port in use or an address not on the host is");
    line("found only by a start.");
    line("");

    line("## Relay: `nexrtc relay`");
    line("");
    line("Each key is a flag (`--listening-port 3478`) and a key of the TOML file given with");
    line("`--config FILE` (`listening_port = 3478`). A flag wins over the file; a list given as");
    line("flags replaces the file's. A list (a repeatable flag) is a string or an array in the");
    line("file. Unknown keys are refused, with their line.");
    line("");
    line("| key | flag | default | meaning |");
    line("|---|---|---|---|");
    let keys = relay_keys::keys();
    for k in keys.iter().filter(|k| k.in_file) {
        let usage = match &k.value_name {
            Some(v) => format!("{} {v}", k.flag),
            None => k.flag.clone(),
        };
        let mut meaning = cell(&k.help);
        if let Some(env) = &k.env {
            meaning.push_str(&format!(" Environment: `{env}`."));
        }
        line(&format!(
            "| `{}` | {} | {} | {meaning} |",
            k.name,
            code(&usage),
            relay_default(&k.default)
        ));
    }
    line("");
    if let Some(c) = keys.iter().find(|k| !k.in_file) {
        line(&format!(
            "`{} FILE`: {} (A flag only.)",
            c.flag,
            c.help.trim_end_matches('.').to_owned() + "."
        ));
        line("");
    }
    line("The tenant secrets file (`secrets_file`) is described in");
    line("[configuration.md](configuration.md#the-relays-tenant-secrets-file).");
    line("");

    line("### Edge agent: `nexrtc relay --controller …` and `nexrtc agent`");
    line("");
    line("With `--controller`, `nexrtc relay` runs the edge agent in-process; `nexrtc agent` runs it");
    line("beside another TURN server. Its settings are flags and environment variables only, not");
    line("keys of the relay's file. `--controller`, a token and `--region` go together.");
    line("");
    line("| flag | default | environment | meaning |");
    line("|---|---|---|---|");
    let agent = flags(&AgentConfig::augment_args(clap::Command::new("agent")));
    for f in &agent {
        line(&format!(
            "| {} | {} | {} | {} |",
            code(&f.usage),
            f.default.as_deref().unwrap_or("none"),
            f.env.as_deref().map_or(String::new(), code),
            cell(&f.help)
        ));
    }
    line("");
    line("`nexrtc agent` only:");
    line("");
    line("| flag | default | meaning |");
    line("|---|---|---|");
    let cli = crate::Cli::command();
    let agent_command = cli.find_subcommand("agent").map(flags).unwrap_or_default();
    for f in agent_command
        .iter()
        .filter(|f| !agent.iter().any(|a| a.id == f.id))
    {
        line(&format!(
            "| {} | {} | {} |",
            code(&f.usage),
            f.default.as_deref().unwrap_or("none"),
            cell(&f.help)
        ));
    }
    line("");

    line("## Controller: `nexrtc controller --config FILE`");
    line("");
    line("Every key is optional. A key with a flag (`nexrtc controller --help`) can be given as");
    line(
        "that flag, which wins over the file. Unknown keys are refused, with their line, in every",
    );
    line("table. `nexrtc controller init` writes a first file with fresh API keys.");
    line("");
    line("| key | flag | default | meaning |");
    line("|---|---|---|---|");
    let controller_flags = flags(&nexrtc_controller::ControllerArgs::augment_args(
        clap::Command::new("controller"),
    ));
    for k in KEYS {
        let (table, leaf) = k.table();
        let name = match table {
            "" => format!("`{leaf}`"),
            t => match t.strip_suffix("[]") {
                Some(array) => format!("`[[{array}]]` `{leaf}`"),
                None => format!("`[{t}]` `{leaf}`"),
            },
        };
        let flag = controller_flags
            .iter()
            .find(|f| f.id == k.name)
            .map_or(String::new(), |f| code(&f.usage));
        line(&format!(
            "| {name} | {flag} | {} | {} |",
            controller_default(&k.default),
            cell(k.help)
        ));
    }
    out
}

/// Comment lines of `text`, wrapped.
fn comment(out: &mut String, text: &str) {
    let mut current = String::from("#");
    for word in text.split_whitespace() {
        if current.len() > 1 && current.len() + 1 + word.len() > 88 {
            out.push_str(&current);
            out.push('\n');
            current = String::from("#");
        }
        current.push(' ');
        current.push_str(word);
    }
    out.push_str(&current);
    out.push('\n');
}

/// `packaging/etc/nexrtc/relay.toml`.
pub fn relay_toml() -> String {
    let mut out = String::new();
    for l in [
        "NexRTC relay configuration: `nexrtc relay --config /etc/nexrtc/relay.toml`.",
        "",
        "Every key is here, commented out (#key = value), with its default, or an example where",
        "there is none. A flag of the same name (--listening-port for listening_port) wins over",
        "this file. Check a change before restarting the relay:",
        "  nexrtc relay --config /etc/nexrtc/relay.toml --check-config",
        "",
        "The edge agent's settings (--controller, --node-token-file, --region, ...) are flags and",
        "environment variables, not keys of this file.",
        "",
        "Generated by `nexrtc config-reference` from the code; the reference, with every flag,",
        "is docs/config-reference.md.",
    ] {
        out.push_str(if l.is_empty() { "#" } else { "# " });
        out.push_str(l);
        out.push('\n');
    }
    for k in relay_keys::keys().iter().filter(|k| k.in_file) {
        out.push('\n');
        comment(&mut out, &k.help);
        match &k.default {
            KeyDefault::Value(_) => {}
            KeyDefault::Described { text, .. } => comment(&mut out, &format!("Default: {text}.")),
            KeyDefault::Unset { required: true, .. } => comment(&mut out, "Required; for example:"),
            KeyDefault::Unset { .. } => comment(&mut out, "Not set by default; for example:"),
        }
        if let Some(env) = &k.env {
            comment(&mut out, &format!("Environment: {env}."));
        }
        out.push_str(&format!("#{} = {}\n", k.name, k.default.toml()));
    }
    out
}

/// `packaging/etc/nexrtc/controller.toml`.
pub fn controller_toml() -> String {
    let mut out = String::new();
    for l in [
        "NexRTC controller configuration: `nexrtc controller --config /etc/nexrtc/controller.toml`.",
        "",
        "Every key is here, commented out (#key = value), with its default, or an example where",
        "there is none; a table's header is commented out as well (#[http]). Flags of the same",
        "name win over this file. `nexrtc controller init` writes a file with fresh API keys.",
        "Check a change before restarting the controller:",
        "  nexrtc controller --config /etc/nexrtc/controller.toml --check-config",
        "",
        "Generated by `nexrtc config-reference` from the code; the reference is",
        "docs/config-reference.md.",
    ] {
        out.push_str(if l.is_empty() { "#" } else { "# " });
        out.push_str(l);
        out.push('\n');
    }
    let mut current = "";
    for k in KEYS {
        let (table, leaf) = k.table();
        if table != current {
            out.push('\n');
            match table.strip_suffix("[]") {
                Some(array) => out.push_str(&format!("#[[{array}]]\n")),
                None => out.push_str(&format!("#[{table}]\n")),
            }
            current = table;
        }
        out.push('\n');
        comment(&mut out, k.help);
        match k.default {
            CKeyDefault::Value(_) => {}
            CKeyDefault::Described { text, .. } => comment(&mut out, &format!("Default: {text}.")),
            CKeyDefault::Unset { .. } => comment(&mut out, "Not set by default; for example:"),
        }
        out.push_str(&format!("#{leaf} = {}\n", k.default.toml()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_each_rendering() {
        let (md, relay, controller) = (markdown(), relay_toml(), controller_toml());
        for k in relay_keys::keys().iter().filter(|k| k.in_file) {
            assert!(md.contains(&format!("| `{}` |", k.name)), "{}", k.name);
            assert!(relay.contains(&format!("\n#{} = ", k.name)), "{}", k.name);
        }
        for k in KEYS {
            let leaf = k.table().1;
            assert!(md.contains(&format!("`{leaf}` |")), "{}", k.name);
            assert!(controller.contains(&format!("\n#{leaf} = ")), "{}", k.name);
        }
        assert!(md.contains("| `--node-token-file FILE` |"), "{md}");
        assert!(md.contains("| `--turn-metrics URL` |"), "{md}");
        assert!(md.contains("`NEXRTC_STATIC_AUTH_SECRET`"), "{md}");
        assert!(md.contains("| `etcd_endpoints` | `--etcd URL` |"), "{md}");
    }

    #[test]
    fn comments_wrap() {
        let mut out = String::new();
        comment(&mut out, &"word ".repeat(40));
        assert!(
            out.lines().count() > 1 && out.lines().all(|l| l.len() <= 88 && l.starts_with("# "))
        );
    }
}
