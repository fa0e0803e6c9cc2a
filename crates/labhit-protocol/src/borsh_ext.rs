//! Borsh encodings for foreign types the contract uses: timestamps, semver versions and
//! requirements, and UUIDs.
//!
//! Borsh has no implementation for `chrono`, `semver` or `uuid` types, so each gets a module
//! with a `serialize` / `deserialize` pair for the derive's field attributes:
//!
//! ```
//! use borsh::{BorshDeserialize, BorshSerialize};
//! use chrono::{DateTime, Utc};
//!
//! #[derive(BorshSerialize, BorshDeserialize)]
//! struct Event {
//!     #[borsh(
//!         serialize_with = "labhit_protocol::borsh_ext::datetime::serialize",
//!         deserialize_with = "labhit_protocol::borsh_ext::datetime::deserialize"
//!     )]
//!     at: DateTime<Utc>,
//! }
//! ```
//!
//! The layouts below are part of the contract: engines in other languages implement them
//! from these docs, and the golden vectors in `tests/vectors/` pin them down byte for byte.
//! All integers are little-endian, as everywhere in borsh. Decoders reject every input that
//! is not the canonical encoding of some value, with an [`io::ErrorKind::InvalidData`] error.

use std::io::{self, Read, Write};

use borsh::{BorshDeserialize, BorshSerialize};

/// An [`io::ErrorKind::InvalidData`] error with `message`.
fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads a borsh `Option` tag: `0` for `None`, `1` for `Some`, anything else is refused.
fn read_option_tag<R: Read>(reader: &mut R, what: &str) -> io::Result<bool> {
    match u8::deserialize_reader(reader)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(invalid_data(format!(
            "invalid option tag {other} before {what} (expected 0 for none or 1 for some)"
        ))),
    }
}

/// Writes a borsh `Option`: `0`, or `1` followed by the value written by `write`.
fn write_option<T, W: Write>(
    value: Option<&T>,
    writer: &mut W,
    write: fn(&T, &mut W) -> io::Result<()>,
) -> io::Result<()> {
    match value {
        None => 0u8.serialize(writer),
        Some(value) => {
            1u8.serialize(writer)?;
            write(value, writer)
        }
    }
}

/// Layouts of the foreign types above for `borsh::BorshSchema` (feature `borsh-schema`):
/// `Timestamp` (a struct of `i64` seconds and `u32` nanoseconds) and `Uuid` (16 bytes, no
/// length). The derive refers to them through the `schema_declaration` /
/// `schema_definitions` pairs of [`datetime`], [`option_datetime`] and [`uuid`].
#[cfg(feature = "borsh-schema")]
mod layout {
    use std::collections::BTreeMap;

    use borsh::BorshSchema;
    use borsh::schema::{Declaration, Definition, Fields, add_definition};

    /// Stands for `chrono::DateTime<Utc>` in a schema.
    pub(super) struct Timestamp;

    impl BorshSchema for Timestamp {
        fn add_definitions_recursively(definitions: &mut BTreeMap<Declaration, Definition>) {
            let fields = Fields::NamedFields(vec![
                ("seconds".to_owned(), i64::declaration()),
                ("nanos".to_owned(), u32::declaration()),
            ]);
            add_definition(
                Self::declaration(),
                Definition::Struct { fields },
                definitions,
            );
            i64::add_definitions_recursively(definitions);
            u32::add_definitions_recursively(definitions);
        }

        fn declaration() -> Declaration {
            "Timestamp".to_owned()
        }
    }

    /// Stands for `uuid::Uuid` in a schema.
    pub(super) struct Uuid;

    impl BorshSchema for Uuid {
        fn add_definitions_recursively(definitions: &mut BTreeMap<Declaration, Definition>) {
            let definition = Definition::Sequence {
                length_width: Definition::ARRAY_LENGTH_WIDTH,
                length_range: 16..=16,
                elements: u8::declaration(),
            };
            add_definition(Self::declaration(), definition, definitions);
            u8::add_definitions_recursively(definitions);
        }

        fn declaration() -> Declaration {
            "Uuid".to_owned()
        }
    }
}

/// Defines `schema_declaration` and `schema_definitions` for a field attribute
/// `#[borsh(schema(with_funcs(...)))]`, describing the field as `$ty`.
#[cfg(feature = "borsh-schema")]
macro_rules! schema_funcs {
    ($ty:ty) => {
        /// The declaration of this layout in a `borsh::BorshSchema` (feature `borsh-schema`).
        pub fn schema_declaration() -> borsh::schema::Declaration {
            <$ty as borsh::BorshSchema>::declaration()
        }

        /// Adds the definitions of this layout to a `borsh::BorshSchema` (feature
        /// `borsh-schema`).
        pub fn schema_definitions(
            definitions: &mut std::collections::BTreeMap<
                borsh::schema::Declaration,
                borsh::schema::Definition,
            >,
        ) {
            <$ty as borsh::BorshSchema>::add_definitions_recursively(definitions);
        }
    };
}

/// `chrono::DateTime<Utc>` as seconds and nanoseconds since the Unix epoch.
///
/// Layout (12 bytes):
///
/// | offset | size | type  | meaning                                                      |
/// |-------:|-----:|-------|--------------------------------------------------------------|
/// | 0      | 8    | `i64` | whole seconds since 1970-01-01T00:00:00Z (negative: before)  |
/// | 8      | 4    | `u32` | nanoseconds added to that, `0..=999_999_999`                 |
///
/// So `1970-01-01T00:00:01.5Z` is `01 00 00 00 00 00 00 00 00 65 cd 1d` and one nanosecond
/// before the epoch is seconds `-1`, nanoseconds `999_999_999`. Leap seconds (which chrono
/// represents with nanoseconds ≥ 10⁹) are refused by the encoder; timestamps outside the
/// range chrono supports (about ±262 000 years) are refused by the decoder.
pub mod datetime {
    use super::*;
    use chrono::{DateTime, Utc};

    /// Nanoseconds must be below this.
    const NANOS_PER_SECOND: u32 = 1_000_000_000;

    #[cfg(feature = "borsh-schema")]
    schema_funcs!(super::layout::Timestamp);

    /// Writes `value` as `i64` seconds then `u32` nanoseconds.
    pub fn serialize<W: Write>(value: &DateTime<Utc>, writer: &mut W) -> io::Result<()> {
        let nanos = value.timestamp_subsec_nanos();
        if nanos >= NANOS_PER_SECOND {
            return Err(invalid_data(format!(
                "timestamp {value:?} is a leap second, which the borsh encoding cannot represent"
            )));
        }
        value.timestamp().serialize(writer)?;
        nanos.serialize(writer)
    }

    /// Reads `i64` seconds then `u32` nanoseconds; refuses nanoseconds ≥ 10⁹ and timestamps
    /// outside chrono's range.
    pub fn deserialize<R: Read>(reader: &mut R) -> io::Result<DateTime<Utc>> {
        let seconds = i64::deserialize_reader(reader)?;
        let nanos = u32::deserialize_reader(reader)?;
        if nanos >= NANOS_PER_SECOND {
            return Err(invalid_data(format!(
                "timestamp nanoseconds {nanos} out of range (must be below 1000000000)"
            )));
        }
        DateTime::from_timestamp(seconds, nanos).ok_or_else(|| {
            invalid_data(format!(
                "timestamp of {seconds} seconds since the Unix epoch is out of the supported range"
            ))
        })
    }
}

/// `Option<chrono::DateTime<Utc>>`: one tag byte, `0` for none, or `1` followed by the 12
/// bytes of [`datetime`]. Any other tag byte is refused.
pub mod option_datetime {
    use super::*;
    use chrono::{DateTime, Utc};

    #[cfg(feature = "borsh-schema")]
    schema_funcs!(Option<super::layout::Timestamp>);

    /// Writes `0`, or `1` and the timestamp.
    pub fn serialize<W: Write>(value: &Option<DateTime<Utc>>, writer: &mut W) -> io::Result<()> {
        write_option(value.as_ref(), writer, super::datetime::serialize)
    }

    /// Reads the tag byte and, after `1`, the timestamp.
    pub fn deserialize<R: Read>(reader: &mut R) -> io::Result<Option<DateTime<Utc>>> {
        if read_option_tag(reader, "timestamp")? {
            super::datetime::deserialize(reader).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `semver::Version` as its canonical string (`1.2.3-rc.1+build.5`), encoded as a borsh
/// string: `u32` byte length, then that many UTF-8 bytes.
///
/// Decoders parse the string with SemVer 2.0.0 rules and refuse anything else; since a
/// version has exactly one valid spelling, the encoding is canonical.
pub mod version {
    use super::*;
    use semver::Version;

    /// Writes the version's string form.
    pub fn serialize<W: Write>(value: &Version, writer: &mut W) -> io::Result<()> {
        value.to_string().serialize(writer)
    }

    /// Reads a string and parses it as a version.
    pub fn deserialize<R: Read>(reader: &mut R) -> io::Result<Version> {
        let text = String::deserialize_reader(reader)?;
        Version::parse(&text)
            .map_err(|err| invalid_data(format!("`{text}` is not a semver version: {err}")))
    }
}

/// `Option<semver::Version>`: one tag byte, `0` for none, or `1` followed by [`version`].
pub mod option_version {
    use super::*;
    use semver::Version;

    /// Writes `0`, or `1` and the version.
    pub fn serialize<W: Write>(value: &Option<Version>, writer: &mut W) -> io::Result<()> {
        write_option(value.as_ref(), writer, super::version::serialize)
    }

    /// Reads the tag byte and, after `1`, the version.
    pub fn deserialize<R: Read>(reader: &mut R) -> io::Result<Option<Version>> {
        if read_option_tag(reader, "version")? {
            super::version::deserialize(reader).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `semver::VersionReq` as a string (`^1.2`, `>=1.0.0, <2`), encoded as a borsh string:
/// `u32` byte length, then that many UTF-8 bytes.
///
/// Encoders write the requirement's normalised form (comparators separated by `", "`, as
/// Rust's `semver` crate displays it); decoders accept any string with Cargo's requirement
/// syntax and refuse the rest.
pub mod version_req {
    use super::*;
    use semver::VersionReq;

    /// Writes the requirement's normalised string form.
    pub fn serialize<W: Write>(value: &VersionReq, writer: &mut W) -> io::Result<()> {
        value.to_string().serialize(writer)
    }

    /// Reads a string and parses it as a version requirement.
    pub fn deserialize<R: Read>(reader: &mut R) -> io::Result<VersionReq> {
        let text = String::deserialize_reader(reader)?;
        VersionReq::parse(&text).map_err(|err| {
            invalid_data(format!(
                "`{text}` is not a semver version requirement: {err}"
            ))
        })
    }
}

/// `Option<semver::VersionReq>`: one tag byte, `0` for none, or `1` followed by
/// [`version_req`].
pub mod option_version_req {
    use super::*;
    use semver::VersionReq;

    /// Writes `0`, or `1` and the requirement.
    pub fn serialize<W: Write>(value: &Option<VersionReq>, writer: &mut W) -> io::Result<()> {
        write_option(value.as_ref(), writer, super::version_req::serialize)
    }

    /// Reads the tag byte and, after `1`, the requirement.
    pub fn deserialize<R: Read>(reader: &mut R) -> io::Result<Option<VersionReq>> {
        if read_option_tag(reader, "version requirement")? {
            super::version_req::deserialize(reader).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `uuid::Uuid` as its 16 raw bytes in RFC 9562 order (big-endian: the first byte is the
/// first two hex digits of the hyphenated form). No length prefix.
///
/// `0b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a` is `0b 7c 6a 1e 3f 52 4c 8e 9d 4a 5b 6f 7e 8d 9c 0a`.
/// Every 16-byte sequence decodes to some UUID; version and variant bits are not checked.
pub mod uuid {
    use super::*;
    use ::uuid::Uuid;

    #[cfg(feature = "borsh-schema")]
    schema_funcs!(super::layout::Uuid);

    /// Writes the 16 bytes.
    pub fn serialize<W: Write>(value: &Uuid, writer: &mut W) -> io::Result<()> {
        writer.write_all(value.as_bytes())
    }

    /// Reads 16 bytes.
    pub fn deserialize<R: Read>(reader: &mut R) -> io::Result<Uuid> {
        <[u8; 16]>::deserialize_reader(reader).map(Uuid::from_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use semver::{Version, VersionReq};

    fn encode<T>(value: &T, write: fn(&T, &mut Vec<u8>) -> io::Result<()>) -> Vec<u8> {
        let mut out = Vec::new();
        write(value, &mut out).unwrap();
        out
    }

    /// Decodes the whole of `bytes`, refusing leftovers like `borsh::from_slice`.
    fn decode<T>(
        bytes: &[u8],
        read: fn(&mut io::Cursor<Vec<u8>>) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut cursor = io::Cursor::new(bytes.to_vec());
        let value = read(&mut cursor)?;
        let left = bytes.len() as u64 - cursor.position();
        if left == 0 {
            Ok(value)
        } else {
            Err(invalid_data(format!("{left} trailing bytes")))
        }
    }

    fn assert_invalid<T: std::fmt::Debug>(result: io::Result<T>, needle: &str) {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains(needle), "`{err}` lacks `{needle}`");
    }

    #[test]
    fn datetime_layout_is_seconds_then_nanos() {
        let t = Utc.timestamp_opt(1, 500_000_000).unwrap();
        let bytes = encode(&t, datetime::serialize);
        assert_eq!(bytes, [1, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x65, 0xcd, 0x1d]);
        assert_eq!(decode(&bytes, datetime::deserialize).unwrap(), t);

        let before_epoch = Utc.timestamp_opt(-1, 999_999_999).unwrap();
        let bytes = encode(&before_epoch, datetime::serialize);
        assert_eq!(&bytes[..8], &(-1i64).to_le_bytes());
        assert_eq!(decode(&bytes, datetime::deserialize).unwrap(), before_epoch);
    }

    #[test]
    fn datetime_rejects_malformed_bytes() {
        let mut bytes = 0i64.to_le_bytes().to_vec();
        bytes.extend(1_000_000_000u32.to_le_bytes());
        assert_invalid(
            decode(&bytes, datetime::deserialize),
            "nanoseconds 1000000000 out of range",
        );

        let mut bytes = i64::MAX.to_le_bytes().to_vec();
        bytes.extend(0u32.to_le_bytes());
        assert_invalid(
            decode(&bytes, datetime::deserialize),
            "out of the supported range",
        );

        assert_invalid(decode(&[0; 11], datetime::deserialize), "Unexpected length");
    }

    #[test]
    fn datetime_refuses_to_encode_a_leap_second() {
        let leap = DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap();
        let err = datetime::serialize(&leap, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn option_datetime_layout() {
        assert_eq!(encode(&None, option_datetime::serialize), [0]);
        let t = Utc.timestamp_opt(7, 0).unwrap();
        let bytes = encode(&Some(t), option_datetime::serialize);
        assert_eq!(bytes.len(), 13);
        assert_eq!(bytes[0], 1);
        assert_eq!(
            decode(&bytes, option_datetime::deserialize).unwrap(),
            Some(t)
        );
        assert_eq!(decode(&[0], option_datetime::deserialize).unwrap(), None);
        assert_invalid(
            decode(&[2], option_datetime::deserialize),
            "invalid option tag 2",
        );
        assert_invalid(
            decode(&[1, 0, 0], option_datetime::deserialize),
            "Unexpected length",
        );
    }

    #[test]
    fn version_is_a_borsh_string() {
        let v = Version::parse("1.2.3-rc.1+build.5").unwrap();
        let bytes = encode(&v, version::serialize);
        assert_eq!(&bytes[..4], &18u32.to_le_bytes());
        assert_eq!(&bytes[4..], b"1.2.3-rc.1+build.5");
        assert_eq!(decode(&bytes, version::deserialize).unwrap(), v);

        let some = encode(&Some(v.clone()), option_version::serialize);
        assert_eq!(decode(&some, option_version::deserialize).unwrap(), Some(v));
        assert_eq!(decode(&[0], option_version::deserialize).unwrap(), None);
    }

    #[test]
    fn version_rejects_malformed_bytes() {
        let bytes = borsh::to_vec("1.2").unwrap();
        assert_invalid(
            decode(&bytes, version::deserialize),
            "`1.2` is not a semver version",
        );
        let bytes = borsh::to_vec("01.2.3").unwrap();
        assert_invalid(
            decode(&bytes, version::deserialize),
            "is not a semver version",
        );
        // Invalid UTF-8.
        assert_invalid(decode(&[1, 0, 0, 0, 0xff], version::deserialize), "utf-8");
        // Declared length longer than the input.
        assert_invalid(
            decode(&[9, 0, 0, 0, b'1'], version::deserialize),
            "Unexpected length",
        );
        assert_invalid(
            decode(&[7], option_version::deserialize),
            "invalid option tag 7",
        );
    }

    #[test]
    fn version_req_round_trips_and_rejects_garbage() {
        let req = VersionReq::parse(">=1.0.0, <2").unwrap();
        let bytes = encode(&req, version_req::serialize);
        assert_eq!(&bytes[4..], b">=1.0.0, <2");
        assert_eq!(decode(&bytes, version_req::deserialize).unwrap(), req);

        let some = encode(&Some(req.clone()), option_version_req::serialize);
        assert_eq!(
            decode(&some, option_version_req::deserialize).unwrap(),
            Some(req)
        );
        assert_eq!(decode(&[0], option_version_req::deserialize).unwrap(), None);

        let bytes = borsh::to_vec("~>1").unwrap();
        assert_invalid(
            decode(&bytes, version_req::deserialize),
            "`~>1` is not a semver version requirement",
        );
    }

    #[test]
    fn uuid_is_sixteen_raw_bytes() {
        let id = ::uuid::Uuid::parse_str("0b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a").unwrap();
        let bytes = encode(&id, uuid::serialize);
        assert_eq!(
            bytes,
            [
                0x0b, 0x7c, 0x6a, 0x1e, 0x3f, 0x52, 0x4c, 0x8e, 0x9d, 0x4a, 0x5b, 0x6f, 0x7e, 0x8d,
                0x9c, 0x0a
            ]
        );
        assert_eq!(decode(&bytes, uuid::deserialize).unwrap(), id);
        assert_invalid(decode(&bytes[..15], uuid::deserialize), "Unexpected length");
    }
}
