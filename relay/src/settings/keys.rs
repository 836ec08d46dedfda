//! Every key of the relay's configuration, read from the flags' own metadata
//! (clap's: name, help, `[default: …]` in the help, environment variable), so
//! that the reference (`docs/config-reference.md`) and the default file
//! (`packaging/etc/nexrtc/relay.toml`), both rendered by `nexrtc
//! config-reference`, say what the code does.
//!
//! A flag's help ends with `[default: VALUE]` when the key has one default
//! value (`VALUE` without spaces: a number, an address, …), or with `[default:
//! words]` when the default is not one value (the number of CPU cores, random
//! at start); such keys, and the keys without a default, have an example value
//! in [`EXAMPLES`]. The tests below check that every value default is the one
//! the relay applies and that the keys are exactly those the file parser accepts.

use clap::{ArgAction, Args as _};

use super::Settings;

/// The flag that names the file itself: a flag only, not a key of the file.
pub const CONFIG_FLAG: &str = "config";

/// What a secret looks like in the default file: a value still containing it
/// is refused, so the example cannot end up as a real secret.
pub const PLACEHOLDER: &str = "CHANGE-ME";

/// TOML example values of the keys that have no default value, for the
/// default file (where they are commented out) and the reference.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("relay_threads", "4"),
    ("relay_ip", "[\"192.0.2.10\"]"),
    ("realm", "\"turn.example.org\""),
    ("secrets_file", "\"/etc/nexrtc/secrets.toml\""),
    (
        "nonce_secret",
        "\"CHANGE-ME-to-16-or-more-random-characters\"",
    ),
    ("cert", "\"/etc/nexrtc/relay.crt\""),
    ("pkey", "\"/etc/nexrtc/relay.key\""),
    ("alternate_server", "\"192.0.2.20:3478\""),
    ("quic_listen", "\"0.0.0.0:443\""),
    ("drain_grace", "300"),
    ("xdp", "[\"eth0\"]"),
];

/// One key: a `nexrtc relay` flag and (but for `config`) a key of its TOML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The file's key: the flag's name in snake_case.
    pub name: String,
    /// `--listening-ip`.
    pub flag: String,
    /// `IP`, `PORT`, …; `None` for a switch.
    pub value_name: Option<String>,
    /// What it does (the flag's help without its default).
    pub help: String,
    pub default: KeyDefault,
    /// The environment variable read when the flag is not given.
    pub env: Option<String>,
    /// A list (flag repeatable; in the file a string or an array).
    pub repeatable: bool,
    /// A key of the file (every flag but `--config`).
    pub in_file: bool,
}

/// A key's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDefault {
    /// One value, as TOML.
    Value(String),
    /// A default that is not one value, described; and an example TOML value.
    Described { text: String, example: String },
    /// Not set unless given (`required`: the relay does not start without it);
    /// an example TOML value.
    Unset { example: String, required: bool },
}

impl KeyDefault {
    /// The TOML value a file line shows: the default, else the example.
    pub fn toml(&self) -> &str {
        match self {
            KeyDefault::Value(v) => v,
            KeyDefault::Described { example, .. } | KeyDefault::Unset { example, .. } => example,
        }
    }
}

/// Every key, in the order of `nexrtc relay --help`.
pub fn keys() -> Vec<Key> {
    let command = Settings::augment_args(clap::Command::new("relay"));
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .map(|arg| {
            let name = arg.get_id().as_str().to_owned();
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let (help, stated) = split_default(&help);
            let repeatable = matches!(arg.get_action(), ArgAction::Append);
            let switch = matches!(arg.get_action(), ArgAction::SetTrue);
            let example = EXAMPLES
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned());
            let required = help.contains("(required)");
            let default = match (stated, example) {
                (Some(v), None) if !v.contains(char::is_whitespace) => {
                    KeyDefault::Value(toml_value(&name, &v, repeatable))
                }
                (Some(text), example) => KeyDefault::Described {
                    example: example.unwrap_or_else(|| format!("(no example for {name})")),
                    text,
                },
                (None, None) if switch => KeyDefault::Value("false".to_owned()),
                (None, None) if repeatable => KeyDefault::Value("[]".to_owned()),
                (None, example) => KeyDefault::Unset {
                    example: example.unwrap_or_default(),
                    required,
                },
            };
            Key {
                flag: format!("--{}", arg.get_long().unwrap_or(&name)),
                value_name: (!switch)
                    .then(|| arg.get_value_names().and_then(|v| v.first()))
                    .flatten()
                    .map(|v| v.to_string()),
                help,
                default,
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                repeatable,
                in_file: name != CONFIG_FLAG,
                name,
            }
        })
        .collect()
}

/// `"Text [default: X]."` → (`"Text."`, `Some("X")`): a help's stated default.
pub fn split_default(help: &str) -> (String, Option<String>) {
    let Some(start) = help.find("[default: ") else {
        return (sentence(help), None);
    };
    let rest = &help[start + "[default: ".len()..];
    let Some(end) = rest.find(']') else {
        return (sentence(help), None);
    };
    let default = rest[..end].trim().to_owned();
    let text = format!("{}{}", help[..start].trim_end(), &rest[end + 1..]);
    (sentence(&text), Some(default))
}

/// Trimmed, ending with a full stop.
fn sentence(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() || t.ends_with('.') {
        t.to_owned()
    } else {
        format!("{t}.")
    }
}

/// `value` as the file writes it: as it is when the parser takes it so (a
/// number), else quoted (an address); a list as an array.
fn toml_value(key: &str, value: &str, list: bool) -> String {
    let bare = toml::from_str::<Settings>(&format!("{key} = {value}")).is_ok();
    let one = if bare {
        value.to_owned()
    } else {
        toml::Value::String(value.to_owned()).to_string()
    };
    if list {
        format!("[{one}]")
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Settings {
        toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_keys_are_the_files_keys() {
        let from_flags: Vec<String> = keys()
            .into_iter()
            .filter(|k| k.in_file)
            .map(|k| k.name)
            .collect();
        let parsed = nexrtc_test_support::serde_fields::struct_fields::<Settings>().unwrap();
        assert_eq!(from_flags, parsed, "every flag is a file key and back");
    }

    #[test]
    fn examples_are_exactly_for_keys_without_a_default_value() {
        let keys = keys();
        for (name, _) in EXAMPLES {
            let key = keys.iter().find(|k| k.name == *name);
            let key = key.unwrap_or_else(|| panic!("example of an unknown key {name}"));
            assert!(
                !matches!(key.default, KeyDefault::Value(_)),
                "{name} has a default value: no example needed"
            );
        }
        for key in keys.iter().filter(|k| k.in_file) {
            let example = key.default.toml();
            assert!(
                !example.is_empty() && !example.starts_with("(no example"),
                "{key:?}"
            );
        }
    }

    #[test]
    fn examples_parse_and_described_defaults_keep_their_words() {
        for key in keys().into_iter().filter(|k| k.in_file) {
            let text = format!("{} = {}", key.name, key.default.toml());
            let _ = file(&text);
        }
        let k = keys();
        let find = |n: &str| k.iter().find(|k| k.name == n).unwrap().clone();
        assert_eq!(
            find("relay_threads").default,
            KeyDefault::Described {
                text: "the number of CPU cores".into(),
                example: "4".into()
            }
        );
        assert_eq!(
            find("listening_ip").default,
            KeyDefault::Value("[\"0.0.0.0\"]".into())
        );
        assert_eq!(
            find("listening_port").default,
            KeyDefault::Value("3478".into())
        );
        assert!(matches!(
            find("realm").default,
            KeyDefault::Unset { required: true, .. }
        ));
        assert_eq!(find("no_udp").default, KeyDefault::Value("false".into()));
        let secret = find("static_auth_secret");
        assert_eq!(secret.env.as_deref(), Some("NEXRTC_STATIC_AUTH_SECRET"));
        assert!(secret.repeatable);
        assert_eq!(find("listening_port").help, "UDP and TCP listening port.");
        assert!(!find("config").in_file);
    }

    #[test]
    fn split_default_cases() {
        assert_eq!(
            split_default("Port [default: 3478]"),
            ("Port.".into(), Some("3478".into()))
        );
        assert_eq!(
            split_default("A [default: x y]. More"),
            ("A. More.".into(), Some("x y".into()))
        );
        assert_eq!(split_default("No default"), ("No default.".into(), None));
    }
}
