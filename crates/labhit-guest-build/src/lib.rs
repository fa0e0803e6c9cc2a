//! Builds LabHit extension crates into components and installable bundles.
//!
//! Shared by `cargo xtask extensions` and by the tests that load components with the host
//! bindings (`labhit-wit/tests/host.rs`), so both build the same way:
//!
//! * [`discover`] finds every extension crate under a directory (a directory holding both
//!   `Cargo.toml` and `extension.toml`) and validates its manifest with
//!   [`Manifest::from_toml`];
//! * [`Builder::build`] runs `cargo build` for `wasm32-wasip2` (a component directly) or
//!   `wasm32-wasip1` (a core module, then [`labhit_bundle::adapt_preview1`], the host's own
//!   adapter, turns it into a component with the WASI preview1 reactor adapter), with the
//!   size-optimised `wasm` profile, into one shared
//!   target directory (`target/guests` in this workspace). A separate target directory means
//!   nested builds started from tests never wait on the lock of the main `target/`;
//!   cargo's own caching makes a rebuild of an unchanged crate a no-op;
//! * [`Extension::bundle`] checks that the component exports `pipeline-step` of a contract
//!   version the manifest's `contract` requirement accepts ([`contract_version`]), and writes
//!   an installable bundle: `extension.toml` plus the component named as the manifest's
//!   `component`;
//! * [`python`] does the same for Python extensions, with a pinned `componentize-py`;
//! * [`schema`] derives the `[inputs]` schema from an extension crate's `Config` type (the
//!   SDK's schema hook) and compares it with the manifest's;
//! * [`project`] puts these together for one extension directory, Rust or Python: build,
//!   check the inputs schema, bundle. `cargo xtask extensions` and `labhit ext build` both
//!   go through it;
//! * [`conforms`] checks a built component against a world of the contract, the way an
//!   author outside this repository would (`wasm-tools component targets`).
//!
//! Not published: this is tooling of the `labhit-contracts` workspace.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use labhit_protocol::manifest::Manifest;

pub mod project;
pub mod python;
pub mod schema;

/// The cargo profile guests are built with. Its settings are passed on the command line too
/// ([`WASM_PROFILE_SETTINGS`]), so crates outside this workspace build the same way.
pub const WASM_PROFILE: &str = "wasm";

/// The settings of the `wasm` profile (the same as `[profile.wasm]` of the workspace
/// manifest): optimise for size, whole-program LTO, strip, abort on panic.
pub const WASM_PROFILE_SETTINGS: &[(&str, &str)] = &[
    ("inherits", "\"release\""),
    ("opt-level", "\"s\""),
    ("lto", "true"),
    ("codegen-units", "1"),
    ("strip", "true"),
    ("panic", "\"abort\""),
    ("debug", "false"),
];

/// Why a build or a bundle failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `extension.toml` does not validate.
    #[error("`{path}` is not a valid extension manifest:\n{diagnostics}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The rendered diagnostics, one per line.
        diagnostics: String,
    },
    /// `cargo build` failed.
    #[error("`cargo build` of `{crate_dir}` for {target} failed ({status}):\n{stderr}")]
    Cargo {
        /// The crate.
        crate_dir: PathBuf,
        /// The target.
        target: Target,
        /// How cargo exited.
        status: std::process::ExitStatus,
        /// The tail of cargo's standard error.
        stderr: String,
    },
    /// cargo built the crate but reported no `.wasm` file for it.
    #[error(
        "`cargo build` of `{crate_dir}` for {target} produced no `.wasm` (is the crate a `cdylib`?)"
    )]
    NoArtifact {
        /// The crate.
        crate_dir: PathBuf,
        /// The target.
        target: Target,
    },
    /// The component does not export `pipeline-step` of a contract the manifest accepts.
    #[error("`{path}`: {message}")]
    Contract {
        /// The component.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The venv with `componentize-py` has not been made.
    #[error(
        "`{path}` is missing: install the pinned componentize-py with `bash tools/venv-install.sh python-ext` (from the workspace root)"
    )]
    PythonToolchain {
        /// Where `componentize-py` was looked for.
        path: PathBuf,
    },
    /// No `componentize-py` to build a Python project with.
    #[error("{message}")]
    NoPythonToolchain {
        /// Where it was looked for and how to get it.
        message: String,
    },
    /// `componentize-py` failed.
    #[error("`componentize-py` of `{dir}` failed ({status}):\n{stderr}")]
    Componentize {
        /// The Python extension.
        dir: PathBuf,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The tail of its standard error.
        stderr: String,
    },
    /// The schema hook (`cargo test --lib` of the extension crate) failed.
    #[error(
        "the schema hook of `{crate_dir}` failed ({status}); `cargo test --lib` builds the crate natively, so it must compile for the host too:\n{output}"
    )]
    SchemaHook {
        /// The crate.
        crate_dir: PathBuf,
        /// How `cargo test` exited.
        status: std::process::ExitStatus,
        /// The tail of its output.
        output: String,
    },
    /// The hand-written `[inputs]` disagrees with the schema derived from the `Config` type.
    #[error(
        "`{manifest}`: `[inputs]` disagrees with the extension's `Config` type:\n{problems}\nchange `[inputs]` or the `Config` type so they agree, or remove `[inputs]` to have it written into the bundle from `Config`"
    )]
    InputsDisagree {
        /// The manifest.
        manifest: PathBuf,
        /// One line per problem, each naming the field.
        problems: String,
    },
    /// The hand-written `[outputs]` disagrees with the schema derived from the `Outputs` type.
    #[error(
        "`{manifest}`: `[outputs]` disagrees with the extension's `Outputs` type:\n{problems}\nchange `[outputs]` or the `Outputs` type so they agree, or remove `[outputs]` to have it written into the bundle from `Outputs`"
    )]
    OutputsDisagree {
        /// The manifest.
        manifest: PathBuf,
        /// One line per problem, each naming the output.
        problems: String,
    },
    /// The directory is not an extension project.
    #[error(
        "`{dir}` is not an extension project: expected `extension.toml` beside `Cargo.toml` (Rust) or `app.py` (Python)"
    )]
    NotAProject {
        /// The directory.
        dir: PathBuf,
    },
    /// The preview1 core module could not be turned into a component.
    #[error("cannot adapt the wasm32-wasip1 module `{path}` into a component: {message}")]
    Adapt {
        /// The core module.
        path: PathBuf,
        /// What `wit-component` reported.
        message: String,
    },
}

/// A `Result` whose error is an [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// The compilation target of a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `wasm32-wasip2`: rustc emits a component directly.
    P2,
    /// `wasm32-wasip1`: rustc emits a core module, adapted with the preview1 adapter.
    P1,
}

impl Target {
    /// The rustc target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Target::P2 => "wasm32-wasip2",
            Target::P1 => "wasm32-wasip1",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.triple())
    }
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The component: for [`Target::P2`] the file cargo wrote; for [`Target::P1`] the adapted
    /// component written beside cargo's core module (`<name>.component.wasm`).
    pub component: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// How long `cargo build` (and the adaptation) took.
    pub elapsed: Duration,
}

/// Runs `cargo build` for guests, into one shared target directory.
#[derive(Debug, Clone)]
pub struct Builder {
    /// The shared target directory, for example `target/guests`.
    pub target_dir: PathBuf,
    /// The cargo program: `$CARGO` when set (as under `cargo test`), else `cargo`.
    pub cargo: OsString,
    /// Whether to let cargo print its progress to standard error (otherwise it is captured
    /// and shown only when the build fails).
    pub verbose: bool,
}

impl Builder {
    /// A builder writing into `target_dir`.
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        Self {
            target_dir: target_dir.into(),
            cargo: std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            verbose: false,
        }
    }

    /// A builder for the workspace at `root`, writing into `root/target/guests`.
    pub fn for_workspace(root: &Path) -> Self {
        Self::new(root.join("target").join("guests"))
    }

    /// A `cargo` command without the settings of an enclosing cargo invocation (coverage
    /// instrumentation, another target directory or target), which must not leak into a
    /// guest build or the schema hook.
    pub(crate) fn cargo_command(&self) -> Command {
        let mut cmd = Command::new(&self.cargo);
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_TARGET_DIR",
            "CARGO_LLVM_COV",
            "LLVM_PROFILE_FILE",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Builds the `cdylib` crate in `crate_dir` for `target` with the `wasm` profile and
    /// returns the component.
    pub fn build(&self, crate_dir: &Path, target: Target) -> Result<Built> {
        let start = Instant::now();
        let manifest_path = crate_dir.join("Cargo.toml");
        let mut cmd = self.cargo_command();
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(&manifest_path)
            .args([
                "--lib",
                "--target",
                target.triple(),
                "--profile",
                WASM_PROFILE,
            ])
            .arg("--target-dir")
            .arg(&self.target_dir)
            .args(["--message-format", "json-render-diagnostics"]);
        for (key, value) in WASM_PROFILE_SETTINGS {
            cmd.arg("--config")
                .arg(format!("profile.{WASM_PROFILE}.{key}={value}"));
        }
        cmd.stdout(Stdio::piped());
        cmd.stderr(if self.verbose {
            Stdio::inherit()
        } else {
            Stdio::piped()
        });

        let mut child = cmd.spawn().map_err(io("cannot run cargo for", crate_dir))?;
        // Read stderr on a thread so neither pipe can fill up and block cargo.
        let stderr = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
                text
            })
        });
        let mut wasm = None;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let line = line.map_err(io("cannot read cargo output for", crate_dir))?;
                if let Some(path) = wasm_artifact(&line, &manifest_path) {
                    wasm = Some(path);
                }
            }
        }
        let status = child
            .wait()
            .map_err(io("cannot wait for cargo for", crate_dir))?;
        let stderr = stderr
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default();
        if !status.success() {
            return Err(Error::Cargo {
                crate_dir: crate_dir.to_owned(),
                target,
                status,
                stderr: tail(&stderr, 60),
            });
        }
        let wasm = wasm.ok_or_else(|| Error::NoArtifact {
            crate_dir: crate_dir.to_owned(),
            target,
        })?;
        let component = match target {
            Target::P2 => wasm,
            Target::P1 => {
                let core = std::fs::read(&wasm).map_err(io("cannot read", &wasm))?;
                let component =
                    labhit_bundle::adapt_preview1(&core).map_err(|err| Error::Adapt {
                        path: wasm.clone(),
                        message: err.0,
                    })?;
                let out = wasm.with_extension("component.wasm");
                write_if_changed(&out, &component)?;
                out
            }
        };
        let size = std::fs::metadata(&component)
            .map_err(io("cannot read", &component))?
            .len();
        Ok(Built {
            component,
            size,
            elapsed: start.elapsed(),
        })
    }
}

/// The `.wasm` file of a `compiler-artifact` message about the crate at `manifest_path`.
fn wasm_artifact(line: &str, manifest_path: &Path) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let reported = Path::new(message.get("manifest_path")?.as_str()?);
    if !same_file(reported, manifest_path) {
        return None;
    }
    message
        .get("filenames")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .find(|name| name.ends_with(".wasm"))
        .map(PathBuf::from)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(io("cannot write", path))
}

/// Checks that `component` only imports what the world `world` of the WIT directory
/// `wit_dir` (with its `deps/`) offers and exports what it requires, matching WASI versions
/// semver-compatibly as hosts do (`wasm-tools component targets`). The error is
/// `wit-component`'s explanation, which names the offending import.
pub fn conforms(component: &[u8], wit_dir: &Path, world: &str) -> Result<(), String> {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit_dir)
        .map_err(|err| format!("`{}` does not parse: {err:#}", wit_dir.display()))?;
    let world = resolve
        .select_world(&[pkg], Some(world))
        .map_err(|err| format!("{err:#}"))?;
    wit_component::targets(&resolve, world, component, true).map_err(|err| format!("{err:#}"))
}

/// The contract version a component targets: the version of its export
/// `labhit:extension/pipeline-step@X.Y.Z`, read the way a host reads it
/// ([`labhit_bundle::read_contract_export`], from the export names, without compiling).
pub fn contract_version(component: &[u8]) -> Result<semver::Version, String> {
    if labhit_bundle::detect(component) == Ok(labhit_bundle::Kind::CoreModule) {
        return Err(
            "is a core wasm module, not a component (build for wasm32-wasip2, \
                    or adapt the wasm32-wasip1 module)"
                .to_owned(),
        );
    }
    let export = labhit_bundle::read_contract_export(component).map_err(|e| e.to_string())?;
    export.version.ok_or_else(|| {
        format!(
            "exports `{}`, which carries no version (expected `{}@<version>`)",
            export.name,
            labhit_bundle::PIPELINE_STEP_EXPORT
        )
    })
}

/// An extension crate: a directory with `Cargo.toml` and a valid `extension.toml`.
#[derive(Debug, Clone)]
pub struct Extension {
    /// The crate directory.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
}

impl Extension {
    /// Reads and validates the extension crate in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("extension.toml");
        let text = std::fs::read_to_string(&path).map_err(io("cannot read", &path))?;
        let manifest = Manifest::from_toml(&text).map_err(|diagnostics| Error::Manifest {
            diagnostics: diagnostics
                .iter()
                .map(|d| format!("  {}:{d}", path.display()))
                .collect::<Vec<_>>()
                .join("\n"),
            path: path.clone(),
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
        })
    }

    /// `category/name`, as a stage's `use` names it.
    pub fn id(&self) -> String {
        format!(
            "{}/{}",
            self.manifest.extension.category.as_str(),
            self.manifest.extension.name.as_str()
        )
    }

    /// Writes the bundle `out/<category>/<name>/`: `extension.toml` and `component`, named
    /// as the manifest's `component`, after checking that the component targets a contract
    /// version the manifest's `contract` accepts. Returns the bundle directory.
    pub fn bundle(&self, component: &Path, out: &Path) -> Result<PathBuf> {
        self.bundle_with_inputs(component, out, None)
    }

    /// [`bundle`](Self::bundle), with `inputs` (a schema derived from the `Config` type,
    /// [`schema`]) written into the bundle's manifest as its `[inputs]`. The manifest must
    /// not declare `[inputs]` itself then.
    pub fn bundle_with_inputs(
        &self,
        component: &Path,
        out: &Path,
        inputs: Option<&serde_json::Value>,
    ) -> Result<PathBuf> {
        self.bundle_with_schemas(component, out, inputs, None)
    }

    /// [`bundle_with_inputs`](Self::bundle_with_inputs), with `outputs` (a schema derived
    /// from the `Outputs` type) written into the bundle's manifest as its `[outputs]` too.
    /// The manifest must not declare a table it is given.
    pub fn bundle_with_schemas(
        &self,
        component: &Path,
        out: &Path,
        inputs: Option<&serde_json::Value>,
        outputs: Option<&serde_json::Value>,
    ) -> Result<PathBuf> {
        let identity = &self.manifest.extension;
        let wasm = std::fs::read(component).map_err(io("cannot read", component))?;
        let contract_error = |message: String| Error::Contract {
            path: component.to_owned(),
            message,
        };
        let version = contract_version(&wasm).map_err(contract_error)?;
        if !identity.contract.matches(&version) {
            return Err(contract_error(format!(
                "exports contract {version}, but extension.toml requires `contract = \"{}\"`",
                identity.contract
            )));
        }
        let dir = out
            .join(identity.category.as_str())
            .join(identity.name.as_str());
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let manifest_src = self.dir.join("extension.toml");
        let mut manifest =
            std::fs::read(&manifest_src).map_err(io("cannot read", &manifest_src))?;
        if inputs.is_some() || outputs.is_some() {
            if !manifest.ends_with(b"\n") {
                manifest.push(b'\n');
            }
            if let Some(inputs) = inputs {
                manifest.extend_from_slice(schema::inputs_toml(inputs).as_bytes());
            }
            if let Some(outputs) = outputs {
                manifest.extend_from_slice(
                    schema::section_toml("outputs", "Outputs", outputs).as_bytes(),
                );
            }
            // What is written must still be a valid manifest, with exactly these schemas.
            let text = String::from_utf8_lossy(&manifest).into_owned();
            let written = Manifest::from_toml(&text).map_err(|diagnostics| Error::Manifest {
                path: dir.join("extension.toml"),
                diagnostics: diagnostics
                    .iter()
                    .map(|d| format!("  (derived schemas):{d}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            })?;
            let survives = |written: Option<serde_json::Value>,
                            derived: Option<&serde_json::Value>| {
                derived.is_none_or(|derived| written.as_ref() == Some(&strip_nulls(derived)))
            };
            if !survives(written.inputs_schema(), inputs)
                || !survives(written.outputs_schema(), outputs)
            {
                return Err(Error::Contract {
                    path: manifest_src,
                    message: "the schema derived from `Config` or `Outputs` does not survive TOML (report this)"
                        .to_owned(),
                });
            }
        }
        write_if_changed(&dir.join("extension.toml"), &manifest)?;
        let target = dir.join(&identity.component);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        write_if_changed(&target, &wasm)?;
        Ok(dir)
    }
}

/// `value` without its `null`s (object members and array items), as TOML keeps it.
fn strip_nulls(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(strip_nulls)
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every extension crate under `root` (a directory holding both `Cargo.toml` and
/// `extension.toml`; `target/` and hidden directories are skipped), sorted by path, each
/// with its manifest validated.
pub fn discover(root: &Path) -> Result<Vec<Extension>> {
    discover_where(root, |dir| dir.join("Cargo.toml").is_file())
}

/// Every directory under `root` holding an `extension.toml` that `accept` takes (the walk
/// stops at any `extension.toml`; `target/` and hidden directories are skipped), sorted by
/// path, each with its manifest validated. The one walk behind [`discover`] and
/// [`python::discover`].
pub(crate) fn discover_where(
    root: &Path,
    accept: impl Fn(&Path) -> bool,
) -> Result<Vec<Extension>> {
    fn walk(dir: &Path, accept: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) -> Result<()> {
        if dir.join("extension.toml").is_file() {
            if accept(dir) {
                out.push(dir.to_owned());
            }
            return Ok(());
        }
        let entries = std::fs::read_dir(dir).map_err(io("cannot read", dir))?;
        for entry in entries {
            let entry = entry.map_err(io("cannot read", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                walk(&path, accept, out)?;
            }
        }
        Ok(())
    }
    let mut dirs = Vec::new();
    if root.is_dir() {
        walk(root, &accept, &mut dirs)?;
    }
    dirs.sort();
    dirs.iter().map(|dir| Extension::load(dir)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
[extension]
category = "util"
name = "hello"
version = "0.2.0"
contract = "^0.2"
description = "Says hello"
component = "hello.wasm"
"#;

    #[test]
    fn discovers_and_bundles_extensions() {
        let root = tempfile::tempdir().expect("tempdir");
        let ext = root.path().join("util/hello");
        std::fs::create_dir_all(&ext).expect("mkdir");
        std::fs::write(ext.join("Cargo.toml"), "[package]\n").expect("write");
        std::fs::write(ext.join("extension.toml"), MANIFEST).expect("write");
        // Not an extension: no extension.toml.
        std::fs::create_dir_all(root.path().join("util/other")).expect("mkdir");
        std::fs::write(root.path().join("util/other/Cargo.toml"), "").expect("write");

        let found = discover(root.path()).expect("discovers");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id(), "util/hello");

        // Bundling checks the component (real components are bundled by the host tests of
        // labhit-wit and by `cargo xtask extensions`): a core module is refused.
        let wasm = root.path().join("built.wasm");
        std::fs::write(&wasm, b"\0asm\x01\0\0\0").expect("write");
        let out = root.path().join("out");
        let err = found[0]
            .bundle(&wasm, &out)
            .expect_err("a core module is no component");
        assert!(err.to_string().contains("is a core wasm module"), "{err}");
        assert!(!out.exists(), "nothing bundled");
    }

    #[test]
    fn invalid_manifests_are_reported_with_their_path() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("Cargo.toml"), "").expect("write");
        std::fs::write(
            root.path().join("extension.toml"),
            MANIFEST.replace("util", "Util"),
        )
        .expect("write");
        let err = discover(root.path()).expect_err("invalid");
        assert!(
            err.to_string()
                .contains("is not a valid extension manifest"),
            "{err}"
        );
    }

    #[test]
    fn artifact_messages_are_matched_by_manifest_path() {
        let line = r#"{"reason":"compiler-artifact","manifest_path":"/x/Cargo.toml","filenames":["/t/a.wasm"]}"#;
        assert_eq!(
            wasm_artifact(line, Path::new("/x/Cargo.toml")),
            Some(PathBuf::from("/t/a.wasm"))
        );
        assert_eq!(wasm_artifact(line, Path::new("/y/Cargo.toml")), None);
        assert_eq!(wasm_artifact("not json", Path::new("/x/Cargo.toml")), None);
    }
}
