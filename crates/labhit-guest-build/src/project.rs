//! One extension project, Rust or Python, from source to installable bundle: what `labhit
//! ext build` does for one directory and `cargo xtask extensions` for each of the
//! repository's.
//!
//! [`Project::load`] tells the language from the files (`Cargo.toml` beside
//! `extension.toml`: a Rust crate; `app.py` beside it: Python) and validates the manifest.
//! [`Project::build`] builds the component ([`Builder`] for `wasm32-wasip2`, or
//! [`python::build_with`]), settles the `[inputs]` schema of a Rust crate against its `Config`
//! type and its `[outputs]` against its `Outputs` type ([`schema`]) and writes the bundle `out/<category>/<name>/`. `progress` receives one
//! line per step, for a terminal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::schema::{self, Derived, Hook};
use crate::{Builder, Error, Extension, Result, Target, python};

/// The language of an extension project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A crate depending on `labhit-sdk`, built for `wasm32-wasip2`.
    Rust,
    /// `app.py` with a class `PipelineStep`, built with `componentize-py`.
    Python,
}

impl Language {
    /// `rust` or `python`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
        }
    }
}

/// Where the bundle's `[inputs]` (or `[outputs]`) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// Hand-written, and checked against the schema derived from `Config`.
    Checked,
    /// Absent from `extension.toml`: derived from `Config` and written into the bundle.
    Derived,
    /// Hand-written (or absent) and not checked: a Python project, or a crate whose `Config`
    /// does not derive `JsonSchema` or which has no schema hook.
    Unchecked,
}

impl Inputs {
    /// `checked`, `derived` or `unchecked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Inputs::Checked => "checked",
            Inputs::Derived => "derived",
            Inputs::Unchecked => "unchecked",
        }
    }
}

/// An extension project directory.
#[derive(Debug, Clone)]
pub struct Project {
    /// The extension, with its validated manifest.
    pub extension: Extension,
    /// Its language.
    pub language: Language,
}

/// How to build a project.
#[derive(Debug, Clone)]
pub struct Options {
    /// Builds Rust crates (its target directory is shared between crates).
    pub builder: Builder,
    /// Builds Python projects; `Err` says why there is no `componentize-py` (building a
    /// Python project is then [`Error::NoPythonToolchain`] with that message).
    pub python: std::result::Result<python::Toolchain, String>,
    /// Where Python components are written before bundling.
    pub python_out: PathBuf,
}

/// A bundle written by [`Project::build`].
#[derive(Debug, Clone)]
pub struct Bundled {
    /// The built component (before it was copied into the bundle).
    pub component: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The bundle directory: `out/<category>/<name>/`.
    pub bundle: PathBuf,
    /// Where its `[inputs]` came from.
    pub inputs: Inputs,
    /// Where its `[outputs]` came from: checked against or derived from the `Outputs` type
    /// of a `labhit_sdk::TypedOutputs` extension, else unchecked.
    pub outputs: Inputs,
    /// Why `inputs` is [`Inputs::Unchecked`], for the log.
    pub note: Option<String>,
    /// How long it all took.
    pub elapsed: Duration,
}

impl Project {
    /// Reads the project in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let language = if !dir.join("extension.toml").is_file() {
            return Err(Error::NotAProject {
                dir: dir.to_owned(),
            });
        } else if dir.join("Cargo.toml").is_file() {
            Language::Rust
        } else if python::is_python(dir) {
            Language::Python
        } else {
            return Err(Error::NotAProject {
                dir: dir.to_owned(),
            });
        };
        Ok(Self {
            extension: Extension::load(dir)?,
            language,
        })
    }

    /// Builds the component, settles `[inputs]` and writes the bundle into
    /// `out/<category>/<name>/`.
    pub fn build(
        &self,
        options: &Options,
        out: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Bundled> {
        let start = Instant::now();
        let id = self.extension.id();
        let manifest_path = self.extension.dir.join("extension.toml");
        let (built, derived) = match self.language {
            Language::Rust => {
                progress(&format!("building {id} for {}", Target::P2));
                let built = options.builder.build(&self.extension.dir, Target::P2)?;
                progress(&format!(
                    "deriving the inputs and outputs schemas of {id} from its `Config` and `Outputs` types (cargo test --lib)"
                ));
                let derived = schema::derive(&options.builder, &self.extension.dir)?;
                (built, derived)
            }
            Language::Python => {
                progress(&format!("building {id} with componentize-py"));
                let toolchain =
                    options
                        .python
                        .as_ref()
                        .map_err(|message| Error::NoPythonToolchain {
                            message: message.clone(),
                        })?;
                let built = python::build_with(toolchain, &self.extension, &options.python_out)?;
                (built, Hook::none())
            }
        };
        let declared = self.extension.manifest.inputs_schema();
        let (outputs, write_outputs) =
            match (&derived.outputs, self.extension.manifest.outputs_schema()) {
                (Some(schema), Some(declared)) => {
                    let problems = schema::output_disagreements(&declared, schema);
                    if !problems.is_empty() {
                        return Err(schema::outputs_disagree(&manifest_path, problems));
                    }
                    (Inputs::Checked, None)
                }
                (Some(schema), None) => (Inputs::Derived, Some(schema)),
                (None, _) => (Inputs::Unchecked, None),
            };
        let (inputs, note, write) = match (&derived.inputs, &declared) {
            (Derived::Schema(schema), Some(declared)) => {
                let problems = schema::disagreements(declared, schema);
                if !problems.is_empty() {
                    return Err(schema::disagree(&manifest_path, problems));
                }
                (Inputs::Checked, None, None)
            }
            (Derived::Schema(schema), None) => (Inputs::Derived, None, Some(schema)),
            (Derived::NotDerived, _) => (
                Inputs::Unchecked,
                Some(
                    "the `Config` type does not derive `schemars::JsonSchema`: `[inputs]` is not checked against it"
                        .to_owned(),
                ),
                None,
            ),
            (Derived::NoHook, _) if self.language == Language::Rust => (
                Inputs::Unchecked,
                Some(
                    "the crate has no schema hook (no `labhit_sdk::export_extension!`, or an older labhit-sdk): `[inputs]` is not checked"
                        .to_owned(),
                ),
                None,
            ),
            (Derived::NoHook, _) => (Inputs::Unchecked, None, None),
        };
        if let Some(note) = &note {
            progress(&format!("note: {note}"));
        }
        let bundle =
            self.extension
                .bundle_with_schemas(&built.component, out, write, write_outputs)?;
        progress(&format!("bundled {id} into {}", bundle.display()));
        Ok(Bundled {
            component: built.component,
            size: built.size,
            bundle,
            inputs,
            outputs,
            note,
            elapsed: start.elapsed(),
        })
    }
}
