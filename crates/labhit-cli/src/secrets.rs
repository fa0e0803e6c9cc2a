//! Where `labhit run` and `labhit ext run` get secret values: one parser, one meaning.
//!
//! * `--secret NAME` — the value of the environment variable `NAME` (an error when it is not
//!   set). Preferred: the value never appears in the process list or the shell history;
//! * `--secrets-file FILE` — one `NAME=VALUE` per line; the value is everything after the
//!   first `=` up to the end of the line, taken literally (no quotes, escapes or
//!   interpolation; a trailing `\r` is dropped); blank lines and lines starting with `#` are
//!   skipped. The file is refused when group or others may read or write it (like ssh does
//!   with keys): `chmod 600 FILE`. `--secrets-file -` reads the same format from standard
//!   input (once);
//! * `--secret NAME=VALUE` — the value on the command line. It still works, but anyone who
//!   can list processes on this machine sees it (`ps`), and it lands in shell history.
//!
//! Every name must be a valid secret name and may be given once. Values shorter than
//! [`MIN_SECRET_BYTES`] are refused: redacting them would garble every message. Errors name
//! the flag, file and line, never a value; every value read before an error is redacted from
//! the message anyway.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use labhit_protocol::manifest::SecretName;
use labhit_runtime::{MIN_SECRET_BYTES, MapSecrets, Redactor};

/// Largest secrets file (or standard input) read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The secret flags, shared by `labhit run` and `labhit ext run`.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct SecretArgs {
    /// A secret: `NAME` takes its value from the environment variable NAME; `NAME=VALUE`
    /// gives it on the command line, where other users see it in `ps` (prefer `NAME` or
    /// `--secrets-file`). Repeatable. Values are redacted from everything labhit writes
    #[arg(long = "secret", value_name = "NAME[=VALUE]")]
    pub(crate) secret: Vec<String>,

    /// Read secrets from FILE, one `NAME=VALUE` per line (`#` comments, blank lines
    /// skipped); `-` reads standard input. Refused when group or others may read or write
    /// FILE (`chmod 600 FILE`). Repeatable
    #[arg(long = "secrets-file", value_name = "FILE")]
    pub(crate) secrets_file: Vec<PathBuf>,
}

/// The secrets given, by name.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    values: BTreeMap<String, String>,
    redactor: Redactor,
}

impl Secrets {
    /// A store serving these values.
    pub(crate) fn store(&self) -> MapSecrets {
        self.values.iter().collect()
    }

    /// A redactor that knows every value.
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

/// A problem with the secret flags (a usage error).
#[derive(Debug)]
pub(crate) struct SecretsError {
    /// What is wrong; names the flag, file and line, never a value (and is redacted of
    /// every value read before the problem, in case one was misplaced).
    pub(crate) message: String,
}

/// Reads every secret the flags give (files first, then `--secret`, in order).
pub(crate) fn collect(args: &SecretArgs) -> Result<Secrets, SecretsError> {
    let mut secrets = Secrets::default();
    let mut stdin_used = false;
    let result = (|| {
        for path in &args.secrets_file {
            let (text, origin) = if path == Path::new("-") {
                if std::mem::replace(&mut stdin_used, true) {
                    return Err(
                        "`--secrets-file -` is given twice; standard input can be read once"
                            .to_owned(),
                    );
                }
                (read_stdin()?, "standard input".to_owned())
            } else {
                (read_file(path)?, format!("`{}`", path.display()))
            };
            parse_lines(&text, &origin, &mut secrets)?;
        }
        for spec in &args.secret {
            let (name, value) = match spec.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = std::env::var(spec).map_err(|e| match e {
                        std::env::VarError::NotPresent => format!(
                            "`--secret {spec}` takes its value from the environment variable \
                             `{spec}`, which is not set; set it, or use `--secrets-file`"
                        ),
                        std::env::VarError::NotUnicode(_) => format!(
                            "`--secret {spec}`: the environment variable `{spec}` is not valid UTF-8"
                        ),
                    })?;
                    (spec.clone(), value)
                }
            };
            add(
                &mut secrets,
                name,
                value,
                &format!("`--secret {}`", redacted_spec(spec)),
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(secrets),
        Err(message) => Err(SecretsError {
            message: secrets.redactor.redact(&message),
        }),
    }
}

/// `NAME=…` for a spec with a value, the spec itself otherwise.
fn redacted_spec(spec: &str) -> String {
    match spec.split_once('=') {
        Some((name, _)) => format!("{name}=…"),
        None => spec.to_owned(),
    }
}

/// Checks and adds one secret; `origin` says where it came from (for messages).
fn add(secrets: &mut Secrets, name: String, value: String, origin: &str) -> Result<(), String> {
    // Known before anything can go wrong, so no later message shows it.
    secrets.redactor.add(&value);
    SecretName::new(name.clone()).map_err(|e| format!("{origin}: {e}"))?;
    if value.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{origin}: the value of secret `{name}` is {} bytes long; secrets shorter than \
             {MIN_SECRET_BYTES} bytes are refused, because redacting them would garble every \
             message",
            value.len()
        ));
    }
    if secrets.values.contains_key(&name) {
        return Err(format!("{origin}: secret `{name}` is given twice"));
    }
    secrets.values.insert(name, value);
    Ok(())
}

fn parse_lines(text: &str, origin: &str, secrets: &mut Secrets) -> Result<(), String> {
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let at = format!("`--secrets-file`: line {} of {origin}", index + 1);
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("{at}: expected `NAME=VALUE`"));
        };
        add(secrets, name.to_owned(), value.to_owned(), &at)?;
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("`--secrets-file {shown}`: cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`--secrets-file {shown}` is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "`--secrets-file {shown}` may be read or written by group or others (mode {mode:03o}); \
             restrict it with `chmod 600 {shown}`"
        ));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| format!("`--secrets-file {shown}`: cannot read it: {e}"))?;
    read_bounded(file, &format!("`--secrets-file {shown}`"))
}

fn read_stdin() -> Result<String, String> {
    read_bounded(
        std::io::stdin().lock(),
        "`--secrets-file -` (standard input)",
    )
}

fn read_bounded(reader: impl std::io::Read, what: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{what}: cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{what} is larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{what} is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
        file
    }

    fn args(secret: &[&str], files: &[&Path]) -> SecretArgs {
        SecretArgs {
            secret: secret.iter().map(|s| (*s).to_owned()).collect(),
            secrets_file: files.iter().map(|p| p.to_path_buf()).collect(),
        }
    }

    #[test]
    fn reads_files_and_command_line_values() {
        let f = file("# comment\n\nTOKEN=a=b c \"q\"\r\nOTHER=value-2\n", 0o600);
        let secrets = collect(&args(&["THIRD=third-value"], &[f.path()])).expect("valid");
        assert_eq!(secrets.values["TOKEN"], "a=b c \"q\"");
        assert_eq!(secrets.values["OTHER"], "value-2");
        assert_eq!(secrets.values["THIRD"], "third-value");
        assert_eq!(secrets.redactor().redact("x value-2"), "x ***");
    }

    #[test]
    fn refuses_files_others_may_read_or_write() {
        for mode in [0o640, 0o604, 0o620, 0o602] {
            let f = file("TOKEN=value-1\n", mode);
            let err = collect(&args(&[], &[f.path()])).expect_err("refused");
            assert!(
                err.message.contains("chmod 600"),
                "{mode:o}: {}",
                err.message
            );
        }
    }

    #[test]
    fn errors_name_the_line_and_never_show_a_value() {
        let f = file("TOKEN=long-enough\nnot a pair\n", 0o600);
        let err = collect(&args(&[], &[f.path()])).expect_err("bad line");
        assert!(err.message.contains("line 2 of"), "{}", err.message);
        let f = file("TOKEN=abc\n", 0o600);
        let err = collect(&args(&[], &[f.path()])).expect_err("short");
        assert!(err.message.contains("3 bytes long"), "{}", err.message);
        assert!(!err.message.contains("abc"), "{}", err.message);
        let err = collect(&args(&["lower=s3cr3t-value"], &[])).expect_err("bad name");
        assert!(!err.message.contains("s3cr3t-value"), "{}", err.message);
        let err = collect(&args(&["A=first-value", "A=second-value"], &[])).expect_err("twice");
        assert!(err.message.contains("given twice"), "{}", err.message);
        let err = collect(&args(&["LABHIT_TEST_SURELY_UNSET_VARIABLE"], &[])).expect_err("unset");
        assert!(err.message.contains("not set"), "{}", err.message);
    }
}
