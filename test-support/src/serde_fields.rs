//! The field names a serde struct accepts, read from its `Deserialize` impl: the
//! tests that keep a hand-written list of configuration keys equal to what the
//! parser accepts use it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The fields `T` accepts (skipped fields are not listed), as its derived
/// `Deserialize` passes them to `deserialize_struct`. `None` when `T` is not a
/// struct with named fields.
pub fn struct_fields<T>() -> Option<&'static [&'static str]>
where
    T: for<'de> Deserialize<'de>,
{
    let mut fields = None;
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

struct Probe<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names read")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: u8,
        #[serde(rename = "bee")]
        b: Option<String>,
        #[serde(skip)]
        c: bool,
    }

    #[test]
    fn lists_the_accepted_names() {
        assert_eq!(super::struct_fields::<Two>(), Some(&["a", "bee"][..]));
        assert_eq!(super::struct_fields::<u8>(), None);
    }
}
