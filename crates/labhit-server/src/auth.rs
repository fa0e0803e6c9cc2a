//! Bearer-token authentication: the token file, the constant-time check and the tonic
//! interceptor that applies it to every RPC.
//!
//! A token file (`labhit serve --token-file FILE`) has one token per line, `NAME TOKEN` or
//! `NAME:TOKEN`; blank lines and lines starting with `#` are ignored. A client sends
//! `authorization: Bearer TOKEN`; the server compares it with every token in constant time
//! (the comparison time depends neither on where a candidate differs nor on which token
//! matched) and answers `UNAUTHENTICATED` when none does. The matching token's NAME is the
//! caller's identity ([`Caller`]), recorded as the approver of stages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq as _;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The identity of a server without a token file, recorded as the approver of stages.
pub const ANONYMOUS: &str = "anonymous";

/// The longest token file read (tokens are short; anything bigger is a mistake).
const MAX_TOKEN_FILE: u64 = 1 << 20;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read token file {}: {source}", path.display())]
    Read {
        /// The token file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_TOKEN_FILE`].
    #[error("token file {} is larger than 1 MiB; it should hold one `NAME TOKEN` line per token", path.display())]
    TooLarge {
        /// The token file.
        path: PathBuf,
    },
    /// A line is not `NAME TOKEN` or `NAME:TOKEN`, or a name or token is malformed.
    #[error("{}:{line}: {problem}; expected `NAME TOKEN` or `NAME:TOKEN` per line", path.display())]
    Line {
        /// The token file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The file holds no token.
    #[error("token file {} holds no token; add a `NAME TOKEN` line", path.display())]
    Empty {
        /// The token file.
        path: PathBuf,
    },
}

/// One named token.
#[derive(Clone)]
struct Token {
    name: String,
    secret: Vec<u8>,
}

/// The tokens a server accepts. Without any (no `--token-file`), every call is allowed and
/// its caller is [`ANONYMOUS`].
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Arc<Vec<Token>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a token never reaches a log.
        let names: Vec<&str> = self.tokens.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

/// The caller of an RPC, put into the request's extensions by [`Tokens`]' interceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The name of the token the caller presented, or [`ANONYMOUS`].
    pub name: String,
}

impl Caller {
    /// The caller of `request` ([`ANONYMOUS`] when the interceptor did not run).
    pub fn of<T>(request: &Request<T>) -> String {
        request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| ANONYMOUS.to_owned(), |caller| caller.name.clone())
    }
}

impl Tokens {
    /// No tokens: authentication is off.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether any token is configured.
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Reads a token file (see the module documentation).
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let read = |source| TokenFileError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_TOKEN_FILE {
            return Err(TokenFileError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(path, &text)
    }

    /// Parses the text of a token file; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TokenFileError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let fail = |problem: String| TokenFileError::Line {
                path: path.to_owned(),
                line: line_no,
                problem,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, secret) = line
                .split_once(|c: char| c == ':' || c.is_whitespace())
                .ok_or_else(|| fail("the line has a name but no token".to_owned()))?;
            let secret = secret.trim();
            if name.is_empty() {
                return Err(fail("the token has no name".to_owned()));
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
            {
                return Err(fail(format!(
                    "token name `{name}` may only contain letters, digits, `-`, `_`, `.` and `@`"
                )));
            }
            if secret.is_empty() {
                return Err(fail(format!("token `{name}` is empty")));
            }
            if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(fail(format!(
                    "token `{name}` contains white space or a control character"
                )));
            }
            if tokens.iter().any(|t| t.name == name) {
                return Err(fail(format!("token name `{name}` is used twice")));
            }
            tokens.push(Token {
                name: name.to_owned(),
                secret: secret.as_bytes().to_vec(),
            });
        }
        if tokens.is_empty() {
            return Err(TokenFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            tokens: Arc::new(tokens),
        })
    }

    /// The name of the token equal to `presented`, comparing with every token in constant
    /// time.
    pub fn identify(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for token in self.tokens.iter() {
            // `ct_eq` on slices of different lengths is false without looking at the bytes;
            // the loop never stops early, so timing does not say which token matched.
            if bool::from(token.secret.as_slice().ct_eq(presented)) {
                found = Some(token.name.as_str());
            }
        }
        found
    }

    /// Checks the `authorization` metadata of a request and returns the caller.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if !self.is_enabled() {
            return Ok(Caller {
                name: ANONYMOUS.to_owned(),
            });
        }
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing `authorization: Bearer TOKEN` metadata; this server requires a token",
                )
            })?
            .as_bytes();
        let presented = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the `authorization` metadata must be `Bearer TOKEN`")
            })?;
        let name = self.identify(presented).ok_or_else(|| {
            Status::unauthenticated("the bearer token is not valid on this server")
        })?;
        Ok(Caller {
            name: name.to_owned(),
        })
    }
}

impl Interceptor for Tokens {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.authenticate(&request)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Tokens, TokenFileError> {
        Tokens::parse(Path::new("tokens"), text)
    }

    #[test]
    fn both_line_forms_comments_and_blank_lines_are_read() {
        let tokens = parse("# ops\nalice s3cret\n\nbob:t0ken-2\n").expect("valid file");
        assert_eq!(tokens.identify(b"s3cret"), Some("alice"));
        assert_eq!(tokens.identify(b"t0ken-2"), Some("bob"));
        assert_eq!(tokens.identify(b"s3cre"), None);
        assert_eq!(tokens.identify(b"s3cret "), None);
        assert_eq!(tokens.identify(b""), None);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let err = parse("alice s3cret\nbob\n").expect_err("missing token refused");
        assert_eq!(
            err.to_string(),
            "tokens:2: the line has a name but no token; expected `NAME TOKEN` or `NAME:TOKEN` per line"
        );
        let err = parse("alice a\nalice b\n").expect_err("duplicate refused");
        assert!(
            err.to_string()
                .contains("tokens:2: token name `alice` is used twice")
        );
        let err = parse("a/b x\n").expect_err("bad name refused");
        assert!(err.to_string().contains("token name `a/b`"));
        let err = parse("# only a comment\n").expect_err("empty refused");
        assert!(err.to_string().contains("holds no token"));
    }

    #[test]
    fn requests_are_checked() {
        let tokens = parse("alice s3cret\n").expect("valid file");
        let mut request = Request::new(());
        assert_eq!(
            tokens.authenticate(&request).err().map(|s| s.code()),
            Some(tonic::Code::Unauthenticated)
        );
        request
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().expect("ascii"));
        assert_eq!(
            tokens.authenticate(&request).err().map(|s| s.code()),
            Some(tonic::Code::Unauthenticated)
        );
        request
            .metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().expect("ascii"));
        assert_eq!(
            tokens.authenticate(&request).ok().map(|c| c.name),
            Some("alice".to_owned())
        );
        assert_eq!(
            Tokens::none().authenticate(&request).ok().map(|c| c.name),
            Some(ANONYMOUS.to_owned())
        );
    }
}
