//! Encoding and decoding of whole messages, in borsh or JSON, with errors that say what
//! went wrong and where.
//!
//! `borsh::from_slice` reports a short input as "Unexpected length of input" and leftover
//! bytes as "Not all bytes read"; [`from_borsh`] tracks the read position so that a
//! [`CodecError`] names the offset, the number of bytes needed and the number left over.
//! Every decoder refuses input larger than [`MAX_MESSAGE_BYTES`] before looking at it, and
//! every encoder refuses to produce such a message, so peers never build what the other
//! side will refuse.
//!
//! ```
//! use labhit_protocol::codec::{from_borsh, to_borsh, CodecError};
//! use labhit_protocol::run::RunStatus;
//!
//! let bytes = to_borsh(&RunStatus::Running)?;
//! assert_eq!(bytes, [1]);
//! assert_eq!(from_borsh::<RunStatus>(&bytes)?, RunStatus::Running);
//! assert!(matches!(
//!     from_borsh::<RunStatus>(&[1, 0]),
//!     Err(CodecError::TrailingBytes { offset: 1, count: 1 })
//! ));
//! # Ok::<(), CodecError>(())
//! ```

use std::io;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest message, in bytes, that the codecs encode or decode: 16 MiB.
///
/// Wire messages carry scripts, environments and references, never file contents (those
/// travel as archives and artifacts), so a message this large is a bug or an attack.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input (or the would-be output) exceeds [`MAX_MESSAGE_BYTES`].
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The limit, [`MAX_MESSAGE_BYTES`].
        limit: usize,
    },
    /// Borsh input ended before the value was complete.
    #[error(
        "truncated borsh input: needed {needed} more byte(s) at offset {offset}, but only {available} remain"
    )]
    Truncated {
        /// Offset of the read that could not be satisfied.
        offset: usize,
        /// How many bytes that read needed.
        needed: usize,
        /// How many bytes were left at that offset.
        available: usize,
    },
    /// Borsh input continued after a complete value.
    #[error("{count} trailing byte(s) after the borsh value, starting at offset {offset}")]
    TrailingBytes {
        /// Where the value ended.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
    /// Borsh input that is not the encoding of any value of the type, such as an unknown
    /// enum tag, invalid UTF-8 or an out-of-range timestamp.
    #[error("invalid borsh data near offset {offset}: {message}")]
    InvalidBorsh {
        /// How many bytes had been read when the problem was found.
        offset: usize,
        /// What was wrong.
        message: String,
    },
    /// JSON input that does not parse or does not have the type's shape.
    #[error("invalid JSON at line {line}, column {column}: {source}")]
    Json {
        /// 1-based line of the problem (0 when it was found after the end of input).
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The value cannot be encoded, e.g. a leap-second timestamp in borsh or a map with
    /// non-string keys in JSON.
    #[error("cannot encode the value: {message}")]
    Encode {
        /// Why.
        message: String,
    },
}

/// The result type of this module.
pub type Result<T, E = CodecError> = std::result::Result<T, E>;

/// Refuses sizes above [`MAX_MESSAGE_BYTES`].
fn check_size(size: usize) -> Result<()> {
    if size > MAX_MESSAGE_BYTES {
        Err(CodecError::TooLarge {
            size,
            limit: MAX_MESSAGE_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Encodes `value` in borsh.
pub fn to_borsh<T: BorshSerialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let bytes = borsh::to_vec(value).map_err(|err| CodecError::Encode {
        message: err.to_string(),
    })?;
    check_size(bytes.len())?;
    Ok(bytes)
}

/// Decodes one borsh value that must span all of `bytes`.
pub fn from_borsh<T: BorshDeserialize>(bytes: &[u8]) -> Result<T> {
    check_size(bytes.len())?;
    let mut reader = TrackingReader {
        input: bytes,
        offset: 0,
        shortfall: None,
    };
    match T::deserialize_reader(&mut reader) {
        Ok(value) if reader.offset == bytes.len() => Ok(value),
        Ok(_) => Err(CodecError::TrailingBytes {
            offset: reader.offset,
            count: bytes.len() - reader.offset,
        }),
        Err(err) => Err(match reader.shortfall {
            Some((offset, needed, available)) => CodecError::Truncated {
                offset,
                needed,
                available,
            },
            None => CodecError::InvalidBorsh {
                offset: reader.offset,
                message: err.to_string(),
            },
        }),
    }
}

/// Encodes `value` as compact JSON.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let text = serde_json::to_string(value).map_err(|err| CodecError::Encode {
        message: err.to_string(),
    })?;
    check_size(text.len())?;
    Ok(text)
}

/// Encodes `value` as indented JSON, for humans.
pub fn to_json_pretty<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let text = serde_json::to_string_pretty(value).map_err(|err| CodecError::Encode {
        message: err.to_string(),
    })?;
    check_size(text.len())?;
    Ok(text)
}

/// Decodes one JSON value (surrounding whitespace allowed) from `text`.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    from_json_slice(text.as_bytes())
}

/// Decodes one JSON value from UTF-8 `bytes`.
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    check_size(bytes.len())?;
    serde_json::from_slice(bytes).map_err(|source| CodecError::Json {
        line: source.line(),
        column: source.column(),
        source,
    })
}

/// A reader over a slice that remembers how far it got and, when a read cannot be
/// satisfied, where and by how much.
struct TrackingReader<'a> {
    input: &'a [u8],
    offset: usize,
    /// `(offset, needed, available)` of the first read that hit the end of the input.
    shortfall: Option<(usize, usize, usize)>,
}

impl<'a> TrackingReader<'a> {
    fn remaining(&self) -> &'a [u8] {
        self.input.get(self.offset..).unwrap_or_default()
    }

    fn note_shortfall(&mut self, needed: usize) {
        let available = self.remaining().len();
        self.shortfall
            .get_or_insert((self.offset, needed, available));
    }
}

impl io::Read for TrackingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.remaining();
        let n = remaining.len().min(buf.len());
        if n == 0 && !buf.is_empty() {
            // Borsh reads byte strings with `read` until it has them all; a zero-length
            // read means the input ended while `buf.len()` more bytes were wanted.
            self.note_shortfall(buf.len());
        }
        buf[..n].copy_from_slice(&remaining[..n]);
        self.offset += n;
        Ok(n)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let remaining = self.remaining();
        if remaining.len() < buf.len() {
            self.note_shortfall(buf.len());
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&remaining[..buf.len()]);
        self.offset += buf.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{ArtifactRef, ExecutorInput};
    use crate::run::RunStatus;

    #[test]
    fn round_trips() {
        let input = ExecutorInput::example();
        let bytes = to_borsh(&input).unwrap();
        assert_eq!(from_borsh::<ExecutorInput>(&bytes).unwrap(), input);
        let text = to_json(&input).unwrap();
        assert_eq!(from_json::<ExecutorInput>(&text).unwrap(), input);
        let pretty = to_json_pretty(&input).unwrap();
        assert_eq!(from_json::<ExecutorInput>(&pretty).unwrap(), input);
    }

    #[test]
    fn truncated_input_names_offset_and_shortfall() {
        // A u64 field cut short: artifact path "a" (4 + 1 bytes), mime "m" (4 + 1), then
        // only 3 of the 8 bytes of size_bytes.
        let artifact = ArtifactRef::new("a", "m", 7).unwrap();
        let bytes = to_borsh(&artifact).unwrap();
        let err = from_borsh::<ArtifactRef>(&bytes[..13]).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Truncated {
                    offset: 10,
                    needed: 8,
                    available: 3
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "truncated borsh input: needed 8 more byte(s) at offset 10, but only 3 remain"
        );

        // A string whose declared length runs past the end (read through `read`).
        let err = from_borsh::<ArtifactRef>(&[5, 0, 0, 0, b'a']).unwrap_err();
        assert!(
            matches!(err, CodecError::Truncated { offset: 5, .. }),
            "{err:?}"
        );

        let err = from_borsh::<RunStatus>(&[]).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Truncated {
                    offset: 0,
                    needed: 1,
                    available: 0
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn every_prefix_of_a_message_is_truncated() {
        let bytes = to_borsh(&ExecutorInput::example()).unwrap();
        for len in 0..bytes.len() {
            let err = from_borsh::<ExecutorInput>(&bytes[..len]).unwrap_err();
            assert!(matches!(err, CodecError::Truncated { .. }), "{len}: {err}");
        }
    }

    #[test]
    fn trailing_bytes_are_counted() {
        let mut bytes = to_borsh(&RunStatus::Failed).unwrap();
        bytes.extend([0, 0, 0]);
        let err = from_borsh::<RunStatus>(&bytes).unwrap_err();
        assert!(matches!(
            err,
            CodecError::TrailingBytes {
                offset: 1,
                count: 3
            }
        ));
        assert_eq!(
            err.to_string(),
            "3 trailing byte(s) after the borsh value, starting at offset 1"
        );
    }

    #[test]
    fn oversized_input_is_refused_up_front() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        let err = from_borsh::<RunStatus>(&big).unwrap_err();
        assert!(matches!(
            err,
            CodecError::TooLarge {
                size,
                limit: MAX_MESSAGE_BYTES
            } if size == MAX_MESSAGE_BYTES + 1
        ));
        assert!(matches!(
            from_json_slice::<RunStatus>(&big),
            Err(CodecError::TooLarge { .. })
        ));
        let huge = "x".repeat(MAX_MESSAGE_BYTES);
        assert!(matches!(to_borsh(&huge), Err(CodecError::TooLarge { .. })));
        assert!(matches!(to_json(&huge), Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn garbage_is_invalid_data() {
        let err = from_borsh::<RunStatus>(&[200]).unwrap_err();
        assert!(
            matches!(err, CodecError::InvalidBorsh { offset: 1, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid borsh data near offset 1: "),
            "{err}"
        );

        // Invalid UTF-8 in the artifact path.
        let err = from_borsh::<ArtifactRef>(&[2, 0, 0, 0, 0xc3, 0x28]).unwrap_err();
        assert!(matches!(err, CodecError::InvalidBorsh { .. }), "{err:?}");
    }

    /// Found by the `borsh` fuzz target: a `LogEntry` whose `fields` map held the key `""`
    /// five times decoded (to one entry), so the bytes were not the value's canonical
    /// encoding. Maps must arrive with strictly ascending keys.
    #[test]
    fn maps_with_unsorted_or_duplicate_keys_are_invalid() {
        let mut entry = crate::run::LogEntry::example();
        entry.fields = [("a", "x"), ("b", "y")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let bytes = to_borsh(&entry).unwrap();
        assert_eq!(from_borsh::<crate::run::LogEntry>(&bytes).unwrap(), entry);
        // `fields` is the last field: two entries of 10 bytes (`u32` length + 1 byte, twice).
        let (head, pairs) = bytes.split_at(bytes.len() - 20);
        let swapped = [head, &pairs[10..], &pairs[..10]].concat();
        let mut duplicated = bytes.clone();
        let b_key = duplicated.len() - 6;
        assert_eq!(duplicated[b_key], b'b');
        duplicated[b_key] = b'a';
        for bad in [swapped, duplicated] {
            let err = from_borsh::<crate::run::LogEntry>(&bad).unwrap_err();
            assert!(matches!(err, CodecError::InvalidBorsh { .. }), "{err:?}");
        }

        // The fuzzer's input (after its type selector byte): five empty keys.
        let mut found = vec![
            0xff, 0xfd, 0xff, 0xff, 0xff, 0x09, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0x20,
        ];
        found.extend([0; 13]);
        found.push(0xd3);
        found.extend([0; 13]);
        found.extend([5, 0, 0, 0]);
        found.extend([0; 40]);
        assert!(matches!(
            from_borsh::<crate::run::LogEntry>(&found),
            Err(CodecError::InvalidBorsh { .. })
        ));
    }

    #[test]
    fn json_errors_have_a_position() {
        let err = from_json::<RunStatus>("\n  \"bogus\"").unwrap_err();
        assert!(matches!(err, CodecError::Json { line: 2, .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("invalid JSON at line 2, column"),
            "{err}"
        );
        let err = from_json::<ExecutorInput>("{").unwrap_err();
        assert!(matches!(err, CodecError::Json { .. }));
    }

    #[test]
    fn unencodable_values_are_reported() {
        let leap = chrono::DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap();
        let mut entry = crate::run::LogEntry::example();
        entry.timestamp = leap;
        assert!(matches!(to_borsh(&entry), Err(CodecError::Encode { .. })));
    }
}
