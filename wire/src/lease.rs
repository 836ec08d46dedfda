//! Lease ids on the wire, as `#[serde(with = "nexrtc_wire::lease")]` on an `i64`.
//!
//! Written as a decimal **string**: etcd's lease ids use all 63 bits (e.g.
//! `7587899319748079376`), and a JSON number above 2^53 loses precision in JavaScript
//! and jq. Read from a string or, as records and agents of the previous release wrote
//! it, a JSON integer.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

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
}
