//! [`Output`], the builder of what a step returns, and [`Artifact`], a workspace file the
//! host keeps.

use crate::Error;

/// A file the step produced and wants the host to keep (WIT `artifact`).
///
/// Made by [`Context::artifact`](crate::Context::artifact), which reads the size and guesses
/// the media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    path: String,
    mime: String,
    size: u64,
}

impl Artifact {
    pub(crate) fn new(path: String, size: u64) -> Self {
        let mime = guess_mime(&path).to_owned();
        Self { path, mime, size }
    }

    /// The same artifact with the media type `mime`.
    #[must_use]
    pub fn with_mime(mut self, mime: impl Into<String>) -> Self {
        self.mime = mime.into();
        self
    }

    /// The workspace-relative, `/`-separated path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The media type, `application/octet-stream` when unknown.
    pub fn mime(&self) -> &str {
        &self.mime
    }

    /// The size in bytes when the artifact was described.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The media type for a file name, by its extension.
fn guess_mime(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    };
    match ext.as_str() {
        "txt" | "log" | "sha256" | "sha512" | "md5" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "toml" => "application/toml",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "zip" => "application/zip",
        "zst" => "application/zstd",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// What a step produced: exit code, named outputs, artifacts and, for executors, the committed
/// snapshot (WIT `step-output`).
///
/// ```
/// use labhit_sdk::Output;
///
/// let out = Output::new().output("files", 3).output("verdict", "ok");
/// assert_eq!(out.get("files"), Some("3"));
/// assert!(out.is_success());
/// assert_eq!(Output::new().exit_code(2).exit_status(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub(crate) exit_code: i32,
    pub(crate) outputs: Vec<(String, String)>,
    pub(crate) artifacts: Vec<Artifact>,
    pub(crate) committed_snapshot: Option<String>,
}

impl Output {
    /// A successful output (exit code 0) with nothing in it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the named output `name` (replacing an earlier value of the same name).
    #[must_use]
    pub fn output(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        let name = name.into();
        let value = value.to_string();
        match self.outputs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.outputs.push((name, value)),
        }
        self
    }

    /// A successful output whose named outputs are the fields of `outputs`, a struct deriving
    /// `serde::Serialize` (the typed path; see [`TypedOutputs`](crate::TypedOutputs), which
    /// also makes the type the source of the manifest's `[outputs]`). Strings are taken as
    /// they are, numbers and booleans as their JSON text, lists and maps as compact JSON;
    /// a field that serializes to `null` (`None`) is left out.
    ///
    /// ```
    /// use labhit_sdk::Output;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Counted { files: usize, verdict: &'static str, note: Option<String> }
    ///
    /// let out = Output::typed(&Counted { files: 3, verdict: "ok", note: None }).unwrap();
    /// assert_eq!(out.get("files"), Some("3"));
    /// assert_eq!(out.get("note"), None);
    /// assert!(Output::typed(&42).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when `outputs` does not serialize to a JSON object (a struct with
    /// named fields, or a map).
    pub fn typed<O: serde::Serialize + ?Sized>(outputs: &O) -> Result<Self, Error> {
        let value = serde_json::to_value(outputs)
            .map_err(|err| Error::internal(format!("cannot serialize the outputs: {err}")))?;
        let fields = match value {
            serde_json::Value::Object(fields) => fields,
            other => {
                let kind = match other {
                    serde_json::Value::Array(_) => "a list",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                return Err(Error::internal(format!(
                    "the outputs must serialize to a JSON object (a struct with named fields), not {kind}"
                )));
            }
        };
        let mut output = Self::new();
        for (name, value) in fields {
            output = match value {
                serde_json::Value::Null => output,
                serde_json::Value::String(text) => output.output(name, text),
                other => output.output(name, other),
            };
        }
        Ok(output)
    }

    /// Adds an artifact. Artifacts are kept even when the step fails (test reports).
    #[must_use]
    pub fn artifact(mut self, artifact: Artifact) -> Self {
        if !self.artifacts.iter().any(|a| a.path == artifact.path) {
            self.artifacts.push(artifact);
        }
        self
    }

    /// Sets the exit code: 0 is success, anything else fails the stage while keeping the
    /// outputs and artifacts (use it for "the tests ran and some failed").
    #[must_use]
    pub fn exit_code(mut self, code: i32) -> Self {
        self.exit_code = code;
        self
    }

    /// For executors: reports the snapshot committed after a successful command, which must
    /// equal the tag of the host's `MissBuildAs` decision.
    #[must_use]
    pub fn committed_snapshot(mut self, tag: impl Into<String>) -> Self {
        self.committed_snapshot = Some(tag.into());
        self
    }

    /// The exit code.
    pub fn exit_status(&self) -> i32 {
        self.exit_code
    }

    /// Whether the exit code is 0.
    pub fn is_success(&self) -> bool {
        self.exit_code == 0
    }

    /// The value of the named output `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every named output, in the order they were first set.
    pub fn outputs(&self) -> &[(String, String)] {
        &self.outputs
    }

    /// The artifacts, in the order they were added.
    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }

    /// The committed snapshot, if any.
    pub fn snapshot(&self) -> Option<&str> {
        self.committed_snapshot.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_media_types() {
        for (path, mime) in [
            ("dist/app.txt", "text/plain"),
            ("reports/UNIT.XML", "application/xml"),
            ("a/b.tar.gz", "application/gzip"),
            ("dist/SHA256SUMS", "application/octet-stream"),
            (".hidden", "application/octet-stream"),
            ("x.unknown", "application/octet-stream"),
        ] {
            assert_eq!(guess_mime(path), mime, "{path}");
        }
    }

    #[derive(serde::Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Typed {
        files: usize,
        verdict: String,
        all_ok: bool,
        note: Option<String>,
        tags: Vec<&'static str>,
    }

    #[test]
    fn typed_outputs_become_named_strings() {
        let out = Output::typed(&Typed {
            files: 3,
            verdict: "ok".to_owned(),
            all_ok: true,
            note: None,
            tags: vec!["a", "b"],
        })
        .expect("a struct");
        assert_eq!(out.get("files"), Some("3"));
        assert_eq!(out.get("verdict"), Some("ok"));
        assert_eq!(out.get("all-ok"), Some("true"));
        assert_eq!(out.get("tags"), Some(r#"["a","b"]"#));
        assert_eq!(out.get("note"), None, "`None` is left out");
        assert_eq!(out.outputs().len(), 4);
        assert!(out.is_success());
    }

    #[test]
    fn typed_outputs_must_be_an_object() {
        for (value, kind) in [
            (serde_json::json!(1), "a number"),
            (serde_json::json!(["a"]), "a list"),
            (serde_json::json!("a"), "a string"),
            (serde_json::json!(null), "null"),
        ] {
            let err = Output::typed(&value).expect_err("not an object");
            assert_eq!(err.kind(), "internal");
            assert!(
                err.message().ends_with(&format!("not {kind}")),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn outputs_are_unique_by_name() {
        let out = Output::new().output("a", 1).output("b", 2).output("a", 3);
        assert_eq!(
            out.outputs(),
            &[
                ("a".to_owned(), "3".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
    }
}
