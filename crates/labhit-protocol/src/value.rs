//! [`Value`]: a dynamic JSON value that also has a borsh encoding.
//!
//! A stage's `with` block is free-form. `serde_json::Value` has no borsh encoding, so the
//! contract carries its own: the same data model as JSON (null, booleans, numbers, strings,
//! arrays, objects with string keys), with integers kept exact. Objects are ordered by key so
//! both encodings are canonical.
//!
//! Borsh layout: one tag byte (`0` null, `1` bool, `2` i64, `3` u64, `4` f64, `5` string,
//! `6` array, `7` object) followed by the payload in borsh's usual encoding. `u64` is only
//! used for integers above `i64::MAX`; floats must be finite.

use std::collections::BTreeMap;
use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nesting deeper than this is refused when decoding, so hostile input cannot overflow the stack.
pub const MAX_DEPTH: usize = 128;

/// A JSON value with a canonical borsh encoding.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// JSON `null`.
    #[default]
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// An integer in `i64` range.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    /// A finite floating point number.
    Float(f64),
    /// A string.
    String(String),
    /// An ordered list.
    Array(Vec<Value>),
    /// An object; keys are unique and sorted.
    Object(BTreeMap<String, Value>),
}

/// A JSON object: the shape of a stage's `with` block.
pub type Map = BTreeMap<String, Value>;

impl Value {
    /// The JSON type name of this value (`"object"`, `"integer"`, …), for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::UInt(_) => "integer",
            Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// The object behind this value, if it is one.
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The string behind this value, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to a `serde_json::Value` (lossless: floats are finite by construction).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::UInt(u) => serde_json::Value::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Object(map) => serde_json::Value::Object(
                map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
            ),
        }
    }

    /// Converts from a `serde_json::Value`.
    pub fn from_json(value: &serde_json::Value) -> Value {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::UInt(u)
                } else {
                    // serde_json numbers without arbitrary precision are i64, u64 or finite f64.
                    Value::Float(n.as_f64().unwrap_or_default())
                }
            }
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                Value::Array(items.iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// A `u64` normalised: values in `i64` range become [`Value::Int`].
    pub fn from_u64(u: u64) -> Value {
        i64::try_from(u).map_or(Value::UInt(u), Value::Int)
    }
}

impl fmt::Display for Value {
    /// Compact JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl From<serde_json::Value> for Value {
    fn from(value: serde_json::Value) -> Self {
        Value::from_json(&value)
    }
}

impl From<&Value> for serde_json::Value {
    fn from(value: &Value) -> Self {
        value.to_json()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::UInt(u) => serializer.serialize_u64(*u),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(items) => Serialize::serialize(items, serializer),
            Value::Object(map) => Serialize::serialize(map, serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        <Value as Deserialize>::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::from_u64(u))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        if f.is_finite() {
            Ok(Value::Float(f))
        } else {
            Err(E::custom("non-finite numbers are not allowed"))
        }
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

impl JsonSchema for Value {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Value".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "description": "Any JSON value." })
    }
}

impl BorshSerialize for Value {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        use BorshSerialize as B;
        match self {
            Value::Null => B::serialize(&0u8, writer),
            Value::Bool(b) => B::serialize(&(1u8, b), writer),
            Value::Int(i) => B::serialize(&(2u8, i), writer),
            Value::UInt(u) => B::serialize(&(3u8, u), writer),
            Value::Float(f) => B::serialize(&(4u8, f), writer),
            Value::String(s) => B::serialize(&(5u8, s), writer),
            Value::Array(items) => B::serialize(&(6u8, items), writer),
            Value::Object(map) => B::serialize(&(7u8, map), writer),
        }
    }
}

impl BorshDeserialize for Value {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        read_value(reader, 0)
    }
}

/// The layout of [`Value`] for `borsh::BorshSchema` (feature `borsh-schema`): an enum with a
/// one-byte tag whose variants, in tag order, are the payloads written by `serialize` above.
#[cfg(feature = "borsh-schema")]
impl borsh::BorshSchema for Value {
    fn add_definitions_recursively(
        definitions: &mut BTreeMap<borsh::schema::Declaration, borsh::schema::Definition>,
    ) {
        use borsh::BorshSchema as S;
        let declaration = <Self as S>::declaration();
        if definitions.contains_key(&declaration) {
            // `Value` contains itself: stop the walk the second time round.
            return;
        }
        let variants = vec![
            (0, "Null".to_owned(), <() as S>::declaration()),
            (1, "Bool".to_owned(), <bool as S>::declaration()),
            (2, "Int".to_owned(), <i64 as S>::declaration()),
            (3, "UInt".to_owned(), <u64 as S>::declaration()),
            (4, "Float".to_owned(), <f64 as S>::declaration()),
            (5, "String".to_owned(), <String as S>::declaration()),
            (6, "Array".to_owned(), <Vec<Value> as S>::declaration()),
            (7, "Object".to_owned(), <Map as S>::declaration()),
        ];
        borsh::schema::add_definition(
            declaration,
            borsh::schema::Definition::Enum {
                tag_width: 1,
                variants,
            },
            definitions,
        );
        <() as S>::add_definitions_recursively(definitions);
        <bool as S>::add_definitions_recursively(definitions);
        <i64 as S>::add_definitions_recursively(definitions);
        <u64 as S>::add_definitions_recursively(definitions);
        <f64 as S>::add_definitions_recursively(definitions);
        <String as S>::add_definitions_recursively(definitions);
        <Vec<Value> as S>::add_definitions_recursively(definitions);
        <Map as S>::add_definitions_recursively(definitions);
    }

    fn declaration() -> borsh::schema::Declaration {
        "Value".to_owned()
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn read_value<R: std::io::Read>(reader: &mut R, depth: usize) -> std::io::Result<Value> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "value nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let tag = u8::deserialize_reader(reader)?;
    Ok(match tag {
        0 => Value::Null,
        1 => Value::Bool(bool::deserialize_reader(reader)?),
        2 => Value::Int(i64::deserialize_reader(reader)?),
        3 => {
            let u = u64::deserialize_reader(reader)?;
            if i64::try_from(u).is_ok() {
                return Err(invalid(format!(
                    "u64 value {u} fits in i64 and must be encoded with tag 2"
                )));
            }
            Value::UInt(u)
        }
        4 => {
            // Borsh refuses NaN itself; infinities have no JSON form, so they are refused too.
            let f = f64::deserialize_reader(reader)?;
            if !f.is_finite() {
                return Err(invalid(format!("f64 value {f} is not finite")));
            }
            Value::Float(f)
        }
        5 => Value::String(String::deserialize_reader(reader)?),
        6 => {
            let len = u32::deserialize_reader(reader)?;
            // Grow as elements arrive: a hostile length must not allocate up front.
            let mut items = Vec::new();
            for _ in 0..len {
                items.push(read_value(reader, depth + 1)?);
            }
            Value::Array(items)
        }
        7 => {
            let len = u32::deserialize_reader(reader)?;
            let mut map = Map::new();
            let mut previous: Option<String> = None;
            for _ in 0..len {
                let key = String::deserialize_reader(reader)?;
                if previous.as_ref().is_some_and(|p| *p >= key) {
                    return Err(invalid(format!(
                        "object keys must be unique and sorted; `{key}` is out of order"
                    )));
                }
                let value = read_value(reader, depth + 1)?;
                previous = Some(key.clone());
                map.insert(key, value);
            }
            Value::Object(map)
        }
        other => return Err(invalid(format!("unknown value tag {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        Value::from(serde_json::json!({
            "depth": 1, "big": u64::MAX, "ratio": 0.5, "name": "x",
            "list": [null, true, "a"], "nested": {"k": -3}
        }))
    }

    #[test]
    fn json_round_trip() {
        let v = sample();
        let text = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, back);
        assert_eq!(
            back.to_json(),
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        );
    }

    #[test]
    fn borsh_round_trip() {
        let v = sample();
        let bytes = borsh::to_vec(&v).unwrap();
        assert_eq!(borsh::from_slice::<Value>(&bytes).unwrap(), v);
    }

    #[test]
    fn borsh_rejects_bad_input() {
        assert!(borsh::from_slice::<Value>(&[9]).is_err(), "unknown tag");
        assert!(borsh::from_slice::<Value>(&[2, 1, 2]).is_err(), "truncated");
        assert!(borsh::from_slice::<Value>(&[0, 0]).is_err(), "trailing");
        let non_canonical = [&[3u8][..], &5u64.to_le_bytes()].concat();
        assert!(borsh::from_slice::<Value>(&non_canonical).is_err());
        // A huge declared length with no data must fail fast, not allocate.
        assert!(borsh::from_slice::<Value>(&[6, 255, 255, 255, 255]).is_err());
        let deep: Vec<u8> = std::iter::repeat_n([6u8, 1, 0, 0, 0], 10_000)
            .flatten()
            .collect();
        assert!(borsh::from_slice::<Value>(&deep).is_err());
        // Float NaN is refused by borsh itself.
        let nan = [&[4u8][..], &f64::NAN.to_le_bytes()].concat();
        assert!(borsh::from_slice::<Value>(&nan).is_err());
        // So are infinities, which JSON cannot carry (found by the `borsh` fuzz target).
        for inf in [f64::INFINITY, f64::NEG_INFINITY] {
            let bytes = [&[4u8][..], &inf.to_le_bytes()].concat();
            assert!(borsh::from_slice::<Value>(&bytes).is_err(), "{inf}");
        }
    }

    #[test]
    fn unsorted_borsh_object_is_rejected() {
        let mut bytes = vec![7u8, 2, 0, 0, 0];
        for key in ["b", "a"] {
            bytes.extend(borsh::to_vec(&key.to_string()).unwrap());
            bytes.push(0);
        }
        assert!(borsh::from_slice::<Value>(&bytes).is_err());
    }
}
