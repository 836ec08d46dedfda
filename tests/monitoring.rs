//! The alert rules (`monitoring/prometheus/alerts.yml`) against real Prometheus tooling:
//! `promtool check rules` and `promtool test rules` (every alert firing when it should,
//! labels and annotations exact, and not before its `for`). And that the rules stay true
//! to the code and the docs: every metric an expression names is one the components
//! export, every alert has its runbook section in `docs/alerts.md` and a firing test case.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{require_tool, run_ok};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/prometheus")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn promtool(args: &[&str]) {
    let what = format!("promtool {}", args.join(" "));
    run_ok(
        &what,
        Command::new("promtool").args(args).current_dir(dir()),
    );
}

#[test]
fn the_alert_rules_are_valid_and_every_alert_fires_as_its_test_says() {
    if require_tool("promtool", "prometheus").is_none() {
        return;
    }
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
    // The example scrape configuration (it names the rule file, checked with it).
    promtool(&["check", "config", "prometheus.yml"]);
}

/// The words of `text` that look like metric names (`nexrtc_…`).
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = (text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("nexrtc_"))
        .map(|w| w.trim_end_matches("_bucket").to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_rules_name_exported_metrics_and_documented_tested_alerts() {
    let rules = read(&dir().join("alerts.yml"));
    let tests = read(&dir().join("alerts_test.yml"));
    let runbooks = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts.md"));
    let sources: String = [
        "controller/src/metrics.rs",
        "controller/src/api/ops.rs",
        "relay/src/metrics.rs",
        "turn-core/src/stats.rs",
    ]
    .iter()
    .map(|p| read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(p)))
    .collect();
    let names = metric_names(&rules);
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        assert!(
            sources.contains(&format!("\"{name}\"")),
            "{name} is exported by no component"
        );
    }
    let alerts: Vec<&str> = (rules.lines())
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in alerts {
        assert!(
            runbooks.contains(&format!("## {alert}\n")),
            "{alert}: no runbook section"
        );
        assert!(
            rules.contains(&format!("docs/alerts.md#{}\"", alert.to_lowercase())),
            "{alert}: its runbook annotation"
        );
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(
            cases >= 2,
            "{alert}: {cases} test cases (want one quiet, one firing)"
        );
    }
}
