//! Python extensions: a directory with `extension.toml` and `app.py` (and no `Cargo.toml`),
//! built into a component with `componentize-py` from the workspace's `wit/` (world
//! `extension`).
//!
//! `componentize-py` is pinned in `tools/python-ext/requirements.txt` and installed into the
//! venv `target/python-ext-venv` by `tools/venv-install.sh python-ext` ([`INSTALL`]); `.ci/run` and
//! `cargo xtask ci` run that script before anything needs it. Nothing here installs it: a
//! missing venv is an error that names the command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use crate::{Built, Error, Extension, Result, io, tail};

/// The command that installs the pinned `componentize-py`, run from the workspace root.
pub const INSTALL: &str = "bash tools/venv-install.sh python-ext";

/// The module `componentize-py` loads: it defines the class `PipelineStep`.
pub const APP_MODULE: &str = "app";

/// The world Python extensions target.
pub const WORLD: &str = "extension";

/// The `componentize-py` of the workspace at `root`, or an error naming [`INSTALL`] when
/// the venv has not been made.
pub fn componentize_py(root: &Path) -> Result<PathBuf> {
    let path = root
        .join("target")
        .join("python-ext-venv")
        .join("bin")
        .join("componentize-py");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::PythonToolchain { path })
    }
}

/// What builds Python extensions: `componentize-py`, the WIT directory of the contract and
/// a file whose change means the toolchain changed (rebuild everything).
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The `componentize-py` program.
    pub componentize_py: PathBuf,
    /// The WIT directory holding the world [`WORLD`] (with its `deps/` if any).
    pub wit: PathBuf,
    /// A file that changes with the toolchain (the venv's pinned requirements), if any.
    pub stamp: Option<PathBuf>,
}

impl Toolchain {
    /// The toolchain of the workspace at `root`: its venv's `componentize-py`
    /// ([`componentize_py`]) and its `wit/`.
    pub fn workspace(root: &Path) -> Result<Self> {
        Ok(Self {
            componentize_py: componentize_py(root)?,
            wit: root.join("wit"),
            stamp: Some(
                root.join("target")
                    .join("python-ext-venv")
                    .join("requirements.txt"),
            ),
        })
    }
}

/// Every Python extension under `root` (a directory holding `extension.toml` and
/// `app.py` but no `Cargo.toml`; `target/` and hidden directories are skipped), sorted by
/// path, each with its manifest validated.
pub fn discover(root: &Path) -> Result<Vec<Extension>> {
    crate::discover_where(root, is_python)
}

/// Whether `dir` holds a Python extension: `extension.toml` and `app.py`, no `Cargo.toml`.
pub fn is_python(dir: &Path) -> bool {
    dir.join("extension.toml").is_file()
        && dir.join(format!("{APP_MODULE}.py")).is_file()
        && !dir.join("Cargo.toml").exists()
}

/// Builds the Python extension `extension` of the workspace at `root` with
/// `componentize-py` into `out_dir/<category>-<name>.wasm` ([`build_with`] and the
/// workspace's [`Toolchain`]).
pub fn build(root: &Path, extension: &Extension, out_dir: &Path) -> Result<Built> {
    build_with(&Toolchain::workspace(root)?, extension, out_dir)
}

/// Builds the Python extension `extension` with `toolchain` into
/// `out_dir/<category>-<name>.wasm`. The build is skipped when that file is newer than
/// every input: the extension's `.py` files, the WIT directory and the toolchain's stamp.
pub fn build_with(toolchain: &Toolchain, extension: &Extension, out_dir: &Path) -> Result<Built> {
    let start = Instant::now();
    let identity = &extension.manifest.extension;
    std::fs::create_dir_all(out_dir).map_err(io("cannot create", out_dir))?;
    let component = out_dir.join(format!(
        "{}-{}.wasm",
        identity.category.as_str(),
        identity.name.as_str()
    ));
    let mut inputs = Vec::new();
    files(&extension.dir, &mut |path| {
        if path.extension().is_some_and(|ext| ext == "py") {
            inputs.push(path.to_owned());
        }
    })?;
    files(&toolchain.wit, &mut |path| inputs.push(path.to_owned()))?;
    inputs.extend(toolchain.stamp.iter().cloned());
    if !newer_than_all(&component, &inputs)? {
        let output = Command::new(&toolchain.componentize_py)
            .arg("-d")
            .arg(&toolchain.wit)
            .args(["-w", WORLD, "componentize", "-p"])
            .arg(&extension.dir)
            .arg(APP_MODULE)
            .arg("-o")
            .arg(&component)
            .output()
            .map_err(io("cannot run", &toolchain.componentize_py))?;
        if !output.status.success() {
            let _ = std::fs::remove_file(&component);
            return Err(Error::Componentize {
                dir: extension.dir.clone(),
                status: output.status,
                stderr: tail(&String::from_utf8_lossy(&output.stderr), 60),
            });
        }
    }
    let size = std::fs::metadata(&component)
        .map_err(io("cannot read", &component))?
        .len();
    Ok(Built {
        component,
        size,
        elapsed: start.elapsed(),
    })
}

/// Calls `each` with every regular file under `dir` (hidden entries and `__pycache__`
/// skipped).
fn files(dir: &Path, each: &mut dyn FnMut(&Path)) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(io("cannot read", dir))?;
    for entry in entries {
        let entry = entry.map_err(io("cannot read", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            files(&path, each)?;
        } else if path.is_file() {
            each(&path);
        }
    }
    Ok(())
}

/// Whether `output` exists and was modified after every file of `inputs`.
fn newer_than_all(output: &Path, inputs: &[PathBuf]) -> Result<bool> {
    let Ok(built) = std::fs::metadata(output).and_then(|m| m.modified()) else {
        return Ok(false);
    };
    for input in inputs {
        let modified = std::fs::metadata(input)
            .and_then(|m| m.modified())
            .map_err(io("cannot read", input))?;
        if modified >= built || modified > SystemTime::now() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
[extension]
category = "util"
name = "hello"
version = "0.1.0"
contract = "^0.2"
description = "Says hello"
component = "hello.wasm"
"#;

    #[test]
    fn a_missing_venv_names_the_install_command() {
        let root = tempfile::tempdir().expect("tempdir");
        let err = componentize_py(root.path()).expect_err("no venv");
        let message = err.to_string();
        assert!(message.contains(INSTALL), "{message}");
        assert!(message.contains("python-ext-venv"), "{message}");

        // Building says the same before doing anything.
        let dir = root.path().join("extensions/util/hello");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("extension.toml"), MANIFEST).expect("write");
        std::fs::write(dir.join("app.py"), "").expect("write");
        let extension = Extension::load(&dir).expect("manifest");
        let err = build(root.path(), &extension, &root.path().join("out")).expect_err("no venv");
        assert!(err.to_string().contains(INSTALL), "{err}");
    }

    #[test]
    fn discovers_python_extensions_but_not_crates() {
        let root = tempfile::tempdir().expect("tempdir");
        let python = root.path().join("util/hello");
        std::fs::create_dir_all(&python).expect("mkdir");
        std::fs::write(python.join("extension.toml"), MANIFEST).expect("write");
        std::fs::write(python.join("app.py"), "").expect("write");
        // A crate with a build script named app.py is still a crate.
        let rust = root.path().join("util/crate");
        std::fs::create_dir_all(&rust).expect("mkdir");
        std::fs::write(rust.join("extension.toml"), MANIFEST).expect("write");
        std::fs::write(rust.join("app.py"), "").expect("write");
        std::fs::write(rust.join("Cargo.toml"), "[package]\n").expect("write");
        // No app.py: not a Python extension.
        let other = root.path().join("util/other");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::fs::write(other.join("extension.toml"), MANIFEST).expect("write");

        let found = discover(root.path()).expect("discovers");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].dir, python);
    }

    #[test]
    fn an_output_older_than_an_input_is_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("app.py");
        let output = dir.path().join("out.wasm");
        assert!(
            !newer_than_all(&output, &[]).expect("check"),
            "missing output"
        );
        std::fs::write(&output, "").expect("write");
        std::fs::write(&input, "").expect("write");
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&output)
            .and_then(|f| f.set_modified(past))
            .expect("set mtime");
        assert!(
            !newer_than_all(&output, std::slice::from_ref(&input)).expect("check"),
            "input changed after the build"
        );
        std::fs::File::options()
            .write(true)
            .open(&input)
            .and_then(|f| f.set_modified(past - std::time::Duration::from_secs(60)))
            .expect("set mtime");
        assert!(
            newer_than_all(&output, &[input]).expect("check"),
            "up to date"
        );
    }
}
