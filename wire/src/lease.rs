//! Lease ids on the wire: [`LeaseId`], or `#[serde(with = "nexrtc_wire::lease")]` on an `i64`.
//!
//! Written as a decimal **string**: etcd's lease ids use all 63 bits (e.g.
//! `7587899319748079376`), and a JSON number above 2^53 loses precision in JavaScript
//! and jq. Read from a string or, as records and agents of the previous release wrote
//! it, a JSON integer.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A relay's lease, as the registration answer grants it and every heartbeat names it: a
/// decimal string in JSON (an integer is still read). The agent used to keep it as an
/// opaque string; every controller has always sent a decimal one, which is all this reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for LeaseId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for LeaseId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(LeaseId)
    }
}

pub fn serialize<S: Serializer>(id: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(LeaseVisitor)
}

struct LeaseVisitor;

impl Visitor<'_> for LeaseVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a lease id (a decimal string)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::LeaseId;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        #[serde(with = "crate::lease")]
        lease: i64,
    }

    /// Above 2^53: a JSON number would not survive JavaScript.
    const BIG: i64 = 7_587_899_319_748_079_376;

    #[test]
    fn a_lease_id_above_2_pow_53_is_a_string_and_round_trips_exactly() {
        const { assert!(BIG > 1 << 53) };
        let text = serde_json::to_string(&Record { lease: BIG }).expect("serialize");
        assert_eq!(text, r#"{"lease":"7587899319748079376"}"#);
        let back: Record = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back.lease, BIG);
        // The previous release's integer form is still read.
        let old: Record = serde_json::from_str(r#"{"lease":7587899319748079376}"#).expect("int");
        assert_eq!(old.lease, BIG);
        for bad in [
            r#"{"lease":"x"}"#,
            r#"{"lease":"1.5"}"#,
            r#"{"lease":1.5}"#,
            r#"{"lease":18446744073709551615}"#,
            r#"{"lease":null}"#,
        ] {
            assert!(serde_json::from_str::<Record>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_lease_id_type_reads_and_writes_the_same() {
        let id = LeaseId(BIG);
        assert_eq!(
            serde_json::to_string(&id).expect("serialize"),
            "\"7587899319748079376\""
        );
        assert_eq!(id.to_string(), "7587899319748079376");
        for text in ["\"7587899319748079376\"", "7587899319748079376"] {
            assert_eq!(serde_json::from_str::<LeaseId>(text).expect(text), id);
        }
        assert!(serde_json::from_str::<LeaseId>("\"lease-1\"").is_err());
    }
}
