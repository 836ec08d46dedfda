//! The lab's plan: regions, the RTT between every pair, jitter and loss (`lab/planet.toml`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Deserialize;

/// Most regions a plan may have (region k owns 10.k.0.0/16, k ≥ 1).
pub const MAX_REGIONS: usize = 32;

/// The committed plan (`lab/planet.toml`).
pub const BUILTIN: &str = include_str!("../planet.toml");

/// One region.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

/// The whole plan, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Region k (1-based) is `regions[k - 1]`.
    pub regions: Vec<Region>,
    /// `rtt_ms[i][j]`: round trip between regions i and j (0-based), symmetric, 0 on the
    /// diagonal.
    pub rtt_ms: Vec<Vec<f64>>,
    /// Standard deviation of the per-packet one-way jitter, ms.
    pub jitter_ms: f64,
    /// Probability that a packet is lost.
    pub loss: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_jitter")]
    jitter_ms: f64,
    #[serde(default = "default_loss")]
    loss: f64,
    region: Vec<Region>,
    rtt_ms: BTreeMap<String, f64>,
}

fn default_jitter() -> f64 {
    1.0
}

fn default_loss() -> f64 {
    0.001
}

/// Why a plan was refused (naming the key).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}")]
    Toml(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Plan {
    /// The committed plan.
    pub fn builtin() -> Plan {
        // The committed file is checked by a test; a broken one is a build of this crate
        // that cannot be used, so failing loudly here is right.
        match Plan::parse(BUILTIN) {
            Ok(plan) => plan,
            Err(e) => panic!("lab/planet.toml: {e}"),
        }
    }

    /// Reads a plan file.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PlanError::Read(path.display().to_string(), e))?;
        Plan::parse(&text).map_err(|e| match e {
            PlanError::Toml(m) => PlanError::Toml(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and checks a plan: names unique, 1..=32 regions, every pair's RTT given
    /// once, finite and ≥ 0; jitter ≥ 0; loss in [0, 1).
    pub fn parse(text: &str) -> Result<Plan, PlanError> {
        let file: File = toml::from_str(text).map_err(|e| PlanError::Toml(e.to_string()))?;
        let n = file.region.len();
        if n == 0 || n > MAX_REGIONS {
            return Err(invalid("region", format!("1 to {MAX_REGIONS} regions")));
        }
        let index: BTreeMap<&str, usize> = (file.region.iter().enumerate())
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        if index.len() != n {
            return Err(invalid("region", "region names must be unique"));
        }
        for r in &file.region {
            let ok = !r.name.is_empty()
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(invalid(
                    "region.name",
                    format!("{:?}: a-z, 0-9 and -", r.name),
                ));
            }
        }
        if !(file.jitter_ms.is_finite() && file.jitter_ms >= 0.0) {
            return Err(invalid("jitter_ms", "a number of ms ≥ 0"));
        }
        if !(0.0..1.0).contains(&file.loss) {
            return Err(invalid("loss", "a probability in [0, 1)"));
        }
        let mut rtt = vec![vec![f64::NAN; n]; n];
        for (i, row) in rtt.iter_mut().enumerate() {
            row[i] = 0.0;
        }
        for (pair, &ms) in &file.rtt_ms {
            let key = format!("rtt_ms.\"{pair}\"");
            let (a, b) = pair
                .split_once('/')
                .ok_or_else(|| invalid(&key, "name the pair as \"a/b\""))?;
            let (Some(&i), Some(&j)) = (index.get(a), index.get(b)) else {
                return Err(invalid(&key, "names a region that is not in the plan"));
            };
            if i == j {
                return Err(invalid(&key, "a region's RTT to itself is 0"));
            }
            if !(ms.is_finite() && ms >= 0.0) {
                return Err(invalid(&key, "a number of ms ≥ 0"));
            }
            if !rtt[i][j].is_nan() {
                return Err(invalid(&key, "the pair is given twice"));
            }
            rtt[i][j] = ms;
            rtt[j][i] = ms;
        }
        for (i, row) in rtt.iter().enumerate() {
            if let Some(j) = row.iter().position(|v| v.is_nan()) {
                let pair = format!("{}/{}", file.region[i].name, file.region[j].name);
                return Err(invalid("rtt_ms", format!("missing \"{pair}\"")));
            }
        }
        Ok(Plan {
            regions: file.region,
            rtt_ms: rtt,
            jitter_ms: file.jitter_ms,
            loss: file.loss,
        })
    }

    /// Region k (1-based) by name.
    pub fn index(&self, name: &str) -> Option<u8> {
        let i = self.regions.iter().position(|r| r.name == name)?;
        u8::try_from(i + 1).ok()
    }

    /// The RTT between two regions by name.
    pub fn rtt(&self, a: &str, b: &str) -> Option<f64> {
        let (i, j) = (self.index(a)?, self.index(b)?);
        Some(self.rtt_ms[usize::from(i) - 1][usize::from(j) - 1])
    }

    /// An address of region k: 10.k.`c`.`d`.
    pub fn address(k: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, k, c, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_plan_is_complete_and_symmetric() {
        let p = Plan::builtin();
        assert_eq!(p.regions.len(), 6);
        assert_eq!(p.index("eu-west"), Some(3));
        assert_eq!(p.rtt("eu-west", "eu-central"), Some(25.0));
        assert_eq!(p.rtt("eu-central", "eu-west"), Some(25.0));
        assert_eq!(p.rtt("sa-east", "sa-east"), Some(0.0));
    }

    #[test]
    fn bad_plans_name_the_key() {
        let base = "[[region]]\nname = \"a\"\nlat = 0\nlon = 0\n[[region]]\nname = \"b\"\nlat = 1\nlon = 1\n";
        let cases = [
            (format!("{base}[rtt_ms]\n"), "missing \"a/b\""),
            (format!("{base}[rtt_ms]\n\"a/b\" = -1\n"), "rtt_ms.\"a/b\""),
            (
                format!("{base}[rtt_ms]\n\"a/b\" = 5\n\"b/a\" = 5\n"),
                "given twice",
            ),
            (format!("{base}[rtt_ms]\n\"a/c\" = 5\n"), "not in the plan"),
            (format!("loss = 2\n{base}[rtt_ms]\n\"a/b\" = 5\n"), "loss"),
        ];
        for (text, expected) in cases {
            let e = Plan::parse(&text).expect_err(&text).to_string();
            assert!(e.contains(expected), "{e} should mention {expected}");
        }
        assert!(Plan::parse(&format!("{base}[rtt_ms]\n\"a/b\" = 5\n")).is_ok());
    }
}
