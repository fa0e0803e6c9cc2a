//! Bounded reading of input files: the one way the runtime and the CLI read a file a user
//! hands them (pipeline, policy file, manifest, component, `--with-file`, …).
//!
//! [`read`] opens the path without blocking (`O_NONBLOCK`, so a FIFO in place of a file
//! cannot hang the open), checks the *opened* handle with `fstat` and refuses anything that
//! is not a regular file (a FIFO, a socket, a device such as a link to `/dev/zero`, a
//! directory), then reads at most `limit + 1` bytes and refuses the file when it is over the
//! limit. Memory use is therefore bounded by the limit whatever the path points at.
//!
//! The limits per kind of file ([`Limit`]):
//!
//! | file | limit |
//! |---|---|
//! | pipeline file | 16 MiB ([`Limit::PIPELINE`], the parser's own limit) |
//! | extension manifest | 1 MiB ([`Limit::MANIFEST`]) |
//! | policy file | 1 MiB ([`Limit::POLICY`]) |
//! | `with` JSON (`labhit ext run --with-file`) | 16 MiB ([`Limit::WITH`]) |
//! | secrets file | 1 MiB ([`Limit::SECRETS`]) |
//! | component | `RuntimeConfig::max_component_bytes`, default 256 MiB ([`DEFAULT_COMPONENT_BYTES`]) |

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// Default largest component file `Runtime::load` reads: 256 MiB.
pub const DEFAULT_COMPONENT_BYTES: u64 = 256 << 20;

/// The largest file of one kind that is read, and what that kind is called in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What the file is, with its article, for messages: `a policy file`.
    pub what: &'static str,
    /// Largest accepted size in bytes.
    pub bytes: u64,
}

impl Limit {
    /// A pipeline file: 16 MiB.
    pub const PIPELINE: Limit = Limit::new("a pipeline file", 16 << 20);
    /// An extension manifest (`extension.toml`): 1 MiB, the manifest parser's own limit.
    pub const MANIFEST: Limit = Limit::new(
        "an extension manifest",
        labhit_protocol::manifest::MAX_MANIFEST_BYTES as u64,
    );
    /// A policy file (`.labhit/policies.toml`): 1 MiB.
    pub const POLICY: Limit = Limit::new("a policy file", 1 << 20);
    /// A JSON `with` document: 16 MiB.
    pub const WITH: Limit = Limit::new("a `with` file", 16 << 20);
    /// A secrets file: 1 MiB.
    pub const SECRETS: Limit = Limit::new("a secrets file", 1 << 20);

    /// A limit of `bytes` for files called `what`.
    pub const fn new(what: &'static str, bytes: u64) -> Limit {
        Limit { what, bytes }
    }

    /// A component (`.wasm`) of at most `bytes`.
    pub const fn component(bytes: u64) -> Limit {
        Limit::new("a component", bytes)
    }
}

/// What a path is when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRegular {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device (`/dev/zero`, a terminal).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Anything else the platform has.
    Other,
}

impl NotRegular {
    fn of(metadata: &Metadata) -> NotRegular {
        let kind = metadata.file_type();
        if kind.is_dir() {
            return NotRegular::Directory;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt as _;
            if kind.is_fifo() {
                return NotRegular::Fifo;
            }
            if kind.is_socket() {
                return NotRegular::Socket;
            }
            if kind.is_char_device() {
                return NotRegular::CharDevice;
            }
            if kind.is_block_device() {
                return NotRegular::BlockDevice;
            }
        }
        NotRegular::Other
    }
}

impl fmt::Display for NotRegular {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotRegular::Directory => "a directory",
            NotRegular::Fifo => "a FIFO",
            NotRegular::Socket => "a socket",
            NotRegular::CharDevice => "a character device",
            NotRegular::BlockDevice => "a block device",
            NotRegular::Other => "a special file",
        })
    }
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing is at the path.
    #[error("`{}` does not exist", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The path is a FIFO, device, directory, …
    #[error("`{}` is {kind}, not a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: NotRegular,
    },
    /// The file is larger than the limit for its kind; it was not read (beyond the limit).
    #[error(
        "`{}` is {} bytes, more than the limit of {} for {}",
        path.display(),
        size.map_or_else(|| "more than that".to_owned(), |s| s.to_string()),
        Bytes(limit.bytes),
        limit.what
    )]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// The limit it broke.
        limit: Limit,
        /// Its size, when the file system says (a file may grow while it is read).
        size: Option<u64>,
    },
    /// Any other I/O error (permissions, …).
    #[error("cannot read `{}`: {}", path.display(), describe(source))]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl ReadError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::NotFound { path }
            | ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::Io { path, .. } => path,
        }
    }

    /// The closest [`io::ErrorKind`], for callers that carry an `io::Error`.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            ReadError::NotFound { .. } => io::ErrorKind::NotFound,
            ReadError::NotRegular {
                kind: NotRegular::Directory,
                ..
            } => io::ErrorKind::IsADirectory,
            ReadError::NotRegular { .. } => io::ErrorKind::InvalidInput,
            ReadError::TooLarge { .. } => io::ErrorKind::FileTooLarge,
            ReadError::Io { source, .. } => source.kind(),
        }
    }
}

impl From<ReadError> for io::Error {
    fn from(err: ReadError) -> io::Error {
        io::Error::new(err.io_kind(), err)
    }
}

/// `16 MiB` for whole mebibytes, `N bytes` otherwise.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1 << 20;
        if self.0 >= MIB && self.0.is_multiple_of(MIB) {
            write!(f, "{} MiB", self.0 / MIB)
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

/// An I/O error without the `(os error N)` tail, starting lowercase (for messages that go
/// on after "cannot read `x`: ").
pub fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

/// Opens `path` for reading without blocking and returns it only when it is a regular file
/// (symbolic links are followed; what they point at must be a regular file).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), ReadError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // A FIFO opened for reading blocks until a writer appears; with O_NONBLOCK it opens
        // at once and the fstat below refuses it.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ReadError::NotFound {
            path: path.to_owned(),
        },
        io::ErrorKind::IsADirectory => ReadError::NotRegular {
            path: path.to_owned(),
            kind: NotRegular::Directory,
        },
        _ => ReadError::Io {
            path: path.to_owned(),
            source: e,
        },
    })?;
    let metadata = file.metadata().map_err(|e| ReadError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    if !metadata.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind: NotRegular::of(&metadata),
        });
    }
    Ok((file, metadata))
}

/// Reads the regular file at `path`, refusing anything else and anything larger than
/// `limit` (see the module documentation). Reads at most `limit.bytes + 1` bytes.
pub fn read(path: &Path, limit: Limit) -> Result<Vec<u8>, ReadError> {
    let (file, metadata) = open_regular(path)?;
    let too_large = |size| ReadError::TooLarge {
        path: path.to_owned(),
        limit,
        size,
    };
    if metadata.len() > limit.bytes {
        return Err(too_large(Some(metadata.len())));
    }
    let capacity = usize::try_from(metadata.len().min(limit.bytes)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io {
            path: path.to_owned(),
            source: e,
        })?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit.bytes {
        return Err(too_large(None));
    }
    Ok(bytes)
}

/// [`read`], then UTF-8 (an invalid file is an [`io::ErrorKind::InvalidData`] error).
pub fn read_to_string(path: &Path, limit: Limit) -> Result<String, ReadError> {
    let bytes = read(path, limit)?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 ({e})")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limit = Limit::new("a test file", 8);

    #[test]
    fn reads_files_within_the_limit_and_refuses_larger_ones() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"12345678").unwrap();
        assert_eq!(read(&ok, SMALL).unwrap(), b"12345678");
        let big = dir.path().join("big");
        std::fs::write(&big, b"123456789").unwrap();
        let err = read(&big, SMALL).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { size: Some(9), .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` is 9 bytes, more than the limit of 8 bytes for a test file",
                big.display()
            )
        );
        assert!(read(&big, Limit::POLICY).is_ok());
        // A sparse 3 GiB file is refused by its size, without reading it.
        let sparse = dir.path().join("sparse");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(3 << 30)
            .unwrap();
        assert!(matches!(
            read(&sparse, Limit::POLICY),
            Err(ReadError::TooLarge {
                size: Some(3_221_225_472),
                ..
            })
        ));
        let msg = ReadError::TooLarge {
            path: "p".into(),
            limit: Limit::POLICY,
            size: Some(3 << 30),
        }
        .to_string();
        assert_eq!(
            msg,
            "`p` is 3221225472 bytes, more than the limit of 1 MiB for a policy file"
        );
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path(), SMALL).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::NotRegular {
                    kind: NotRegular::Directory,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("is a directory, not a regular file")
        );
        let missing = dir.path().join("missing");
        assert!(matches!(
            read(&missing, SMALL),
            Err(ReadError::NotFound { .. })
        ));
        #[cfg(unix)]
        {
            let zero = dir.path().join("zero.wasm");
            std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
            let err = read(&zero, SMALL).unwrap_err();
            assert!(
                err.to_string()
                    .ends_with("is a character device, not a regular file"),
                "{err}"
            );
            // A FIFO without a writer: the open must not block.
            let fifo = dir.path().join("fifo");
            let made = std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap();
            assert!(made.success());
            let err = read(&fifo, SMALL).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("`{}` is a FIFO, not a regular file", fifo.display())
            );
        }
    }
}
