//! The WebAssembly preamble: magic number `\0asm`, then a 2-byte version and a 2-byte layer
//! (layer 0 is a core module, layer 1 a component).

use std::fmt;

/// What kind of WebAssembly file an extension shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A component (for example built for `wasm32-wasip2`).
    Component,
    /// A core module (for example built for `wasm32-wasip1`); adapted into a component
    /// with [`crate::adapt_preview1`] before use.
    CoreModule,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Component => "component",
            Kind::CoreModule => "core module (wasip1)",
        })
    }
}

/// Why a file is not WebAssembly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The file is empty.
    #[error("the file is empty")]
    Empty,
    /// The file does not start with `\0asm` (or is shorter than the 8-byte preamble).
    #[error("it does not start with the WebAssembly magic number `\\0asm`")]
    NoMagic,
    /// The version and layer are neither a core module's nor a component's.
    #[error("unknown WebAssembly version/layer {0:02x?} (expected a component or a core module)")]
    UnknownVersion([u8; 4]),
}

/// Tells a component from a core module by the 8-byte preamble; `bytes` may be just the
/// first 8 bytes of the file.
pub fn detect(bytes: &[u8]) -> Result<Kind, HeaderError> {
    if bytes.is_empty() {
        return Err(HeaderError::Empty);
    }
    let (Some(magic), Some(&[a, b, c, d])) = (bytes.get(..4), bytes.get(4..8)) else {
        return Err(HeaderError::NoMagic);
    };
    if magic != b"\0asm" {
        return Err(HeaderError::NoMagic);
    }
    match [a, b, c, d] {
        [0x01, 0x00, 0x00, 0x00] => Ok(Kind::CoreModule),
        [0x0d, 0x00, 0x01, 0x00] => Ok(Kind::Component),
        other => Err(HeaderError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds_and_refuses_non_wasm() {
        assert_eq!(detect(b"\0asm\x0d\0\x01\0"), Ok(Kind::Component));
        assert_eq!(detect(b"\0asm\x01\0\0\0\x01"), Ok(Kind::CoreModule));
        assert_eq!(detect(b""), Err(HeaderError::Empty));
        assert_eq!(detect(b"\0asm"), Err(HeaderError::NoMagic));
        assert_eq!(detect(b"#!/bin/sh\necho hi\n"), Err(HeaderError::NoMagic));
        assert_eq!(
            detect(b"\0asm\x02\0\0\0"),
            Err(HeaderError::UnknownVersion([2, 0, 0, 0]))
        );
    }
}
