//! What every client command shares: `--server`, the bearer token and the connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use labhit_proto::PipelineServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The server the client commands talk to by default: where `labhit serve` listens.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:7777";

/// The environment variable holding the bearer token.
pub(crate) const TOKEN_VAR: &str = "LABHIT_TOKEN";

/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--server` and `--token-file`, shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// The server's URL
    #[arg(long, value_name = "URL", default_value = DEFAULT_SERVER)]
    server: String,

    /// A file holding the bearer token (the token alone on one line) [default: the
    /// environment variable LABHIT_TOKEN]
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// The generated client with the bearer token attached to every call.
pub(crate) type Client = PipelineServiceClient<InterceptedService<Channel, Auth>>;

/// Adds `authorization: Bearer TOKEN` to every request (nothing without a token).
#[derive(Debug, Clone)]
pub(crate) struct Auth(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl ServerArgs {
    /// Connects to the server; a bad URL, an unreadable token or an unreachable server is
    /// an error naming the URL or the file.
    pub(crate) async fn connect(&self) -> Result<Client> {
        let auth = Auth(self.token()?);
        let endpoint = endpoint(&self.server)?;
        let channel = endpoint.connect().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to the server at {}: {}; is `labhit serve` running there? (set the address with --server URL)",
                self.server,
                describe_transport(&e)
            )
        })?;
        Ok(PipelineServiceClient::with_interceptor(channel, auth)
            .max_decoding_message_size(64 * 1024 * 1024))
    }

    /// The bearer token: `--token-file`, else `LABHIT_TOKEN`, else none.
    fn token(&self) -> Result<Option<MetadataValue<Ascii>>> {
        let (token, source) = match &self.token_file {
            Some(path) => (
                read_token_file(path)?,
                format!("--token-file {}", path.display()),
            ),
            None => match std::env::var(TOKEN_VAR) {
                Ok(token) => (token.trim().to_owned(), TOKEN_VAR.to_owned()),
                Err(std::env::VarError::NotPresent) => return Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => {
                    bail!("{TOKEN_VAR} is not valid UTF-8; set it to the token alone")
                }
            },
        };
        check_token(&token).with_context(|| format!("invalid token in {source}"))?;
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .with_context(|| format!("invalid token in {source}: not a valid header value"))?;
        Ok(Some(value))
    }
}

/// The token in `path`: its single non-empty line, trimmed.
fn read_token_file(path: &Path) -> Result<String> {
    let shown = path.display();
    let (file, meta) = labhit_runtime::fsio::open_regular(path)
        .map_err(|e| anyhow::anyhow!("cannot read the token file {shown}: {e}"))?;
    if meta.len() > MAX_TOKEN_FILE {
        bail!(
            "the token file {shown} is {} bytes; a token file holds one token (at most {MAX_TOKEN_FILE} bytes)",
            meta.len()
        );
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_TOKEN_FILE), &mut text)
        .with_context(|| format!("cannot read the token file {shown} (it must be UTF-8 text)"))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(token) = lines.next() else {
        bail!("the token file {shown} is empty; put the token on one line");
    };
    if lines.next().is_some() {
        bail!(
            "the token file {shown} has more than one line; the client's token file holds the token alone (the server's --token-file has one `NAME TOKEN` line per client)"
        );
    }
    Ok(token.to_owned())
}

/// A token is visible ASCII without spaces.
fn check_token(token: &str) -> Result<()> {
    if token.is_empty() {
        bail!("the token is empty");
    }
    if token.chars().any(|c| c.is_whitespace()) {
        bail!(
            "the token contains whitespace; give the token alone (not the server's `NAME TOKEN` line)"
        );
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        bail!("the token must be printable ASCII");
    }
    Ok(())
}

/// The endpoint for `url`: `http://HOST:PORT` (TLS is not supported by this client).
fn endpoint(url: &str) -> Result<Endpoint> {
    let bad = |why: &str| anyhow::anyhow!("invalid --server {url:?}: {why}");
    if url.starts_with("https://") {
        return Err(bad(
            "https is not supported by this client yet; use http:// (on a trusted network or through a tunnel)",
        ));
    }
    if !url.starts_with("http://") {
        return Err(bad("expected a URL like http://127.0.0.1:7777"));
    }
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    Ok(endpoint)
}

/// A transport error with its causes, on one line.
fn describe_transport(err: &tonic::transport::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{check_token, endpoint};

    #[test]
    fn tokens_must_be_one_printable_word() {
        assert!(check_token("abc-DEF_123.~+/=").is_ok());
        for bad in ["", "alice secret", "tab\there", "ünï", "nul\0"] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_urls_are_http() {
        assert!(endpoint("http://127.0.0.1:7777").is_ok());
        for bad in [
            "127.0.0.1:7777",
            "https://example.com",
            "ftp://x",
            "http://bad host",
        ] {
            let err = endpoint(bad).expect_err(bad).to_string();
            assert!(err.starts_with("invalid --server"), "{err}");
        }
    }
}
