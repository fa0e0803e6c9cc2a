//! `cargo xtask extensions [--out DIR] [--p1]`: builds every extension crate under
//! `extensions/` into an installable bundle.
//!
//! Each extension (a directory with `Cargo.toml` and `extension.toml`) is built for
//! `wasm32-wasip2` with the size-optimised `wasm` profile into the shared target directory
//! `target/guests`, its manifest is validated, and `extension.toml` plus the component (named
//! as the manifest's `component`) are written to `<out>/<category>/<name>/` (default
//! `target/extensions`). The `wasm32-wasip1` route (a core module turned into a component
//! with the WASI preview1 adapter) is always shown for the first extension, and for every
//! extension with `--p1`; those bundles go to `<out>-wasip1/`. The build logic lives in
//! `labhit-guest-build`, which the host tests of `labhit-wit` and `labhit ext build` share:
//! the `wasm32-wasip2` bundles go through `labhit_guest_build::project`, so the `[inputs]`
//! of each manifest is checked against the extension's `Config` type, and its `[outputs]`
//! against its `Outputs` type (the SDK's schema hook, run natively with `cargo test
//! --lib`), exactly as `labhit ext build` checks them.
//!
//! Python extensions (a directory with `extension.toml` and `app.py`, see
//! `labhit_guest_build::python`) are built with the pinned `componentize-py` into
//! `target/python-ext/` and bundled the same way when its venv exists
//! (`bash tools/venv-install.sh python-ext`, which `cargo xtask ci` runs); without it they are
//! skipped with a note naming that command.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use labhit_guest_build::project::{Language, Options, Project};
use labhit_guest_build::{Builder, Target, discover, python};

/// One row of the summary table.
struct Row {
    extension: String,
    version: String,
    target: Target,
    size: u64,
    elapsed: Duration,
    bundle: PathBuf,
}

/// Builds and bundles every extension under `root/extensions`.
pub(crate) fn run(root: &Path, out: Option<PathBuf>, all_p1: bool) -> Result<()> {
    let start = Instant::now();
    let extensions = discover(&root.join("extensions"))?;
    if extensions.is_empty() {
        bail!(
            "no extension crates under {}",
            root.join("extensions").display()
        );
    }
    let out = out.unwrap_or_else(|| root.join("target").join("extensions"));
    let mut out_p1 = out.clone().into_os_string();
    out_p1.push("-wasip1");
    let out_p1 = PathBuf::from(out_p1);

    let mut builder = Builder::for_workspace(root);
    builder.verbose = true;
    let mut rows = Vec::new();
    for (i, extension) in extensions.iter().enumerate() {
        let mut targets = vec![(Target::P2, &out)];
        if all_p1 || i == 0 {
            targets.push((Target::P1, &out_p1));
        }
        for (target, out) in targets {
            let row = if target == Target::P2 {
                // The route of `labhit ext build`: build, check `[inputs]` against the
                // `Config` type and `[outputs]` against `Outputs` (or write them), bundle.
                let project = Project {
                    extension: extension.clone(),
                    language: Language::Rust,
                };
                let bundled = project
                    .build(&options(&builder, root), out, &mut |line| {
                        eprintln!("{line}")
                    })
                    .with_context(|| format!("building {}", extension.id()))?;
                Row {
                    extension: extension.id(),
                    version: extension.manifest.extension.version.to_string(),
                    target,
                    size: bundled.size,
                    elapsed: bundled.elapsed,
                    bundle: bundled.bundle,
                }
            } else {
                eprintln!("building {} for {target}", extension.id());
                let built = builder
                    .build(&extension.dir, target)
                    .with_context(|| format!("building {}", extension.id()))?;
                let bundle = extension.bundle(&built.component, out)?;
                Row {
                    extension: extension.id(),
                    version: extension.manifest.extension.version.to_string(),
                    target,
                    size: built.size,
                    elapsed: built.elapsed,
                    bundle,
                }
            };
            rows.push(row);
        }
    }
    let mut count = extensions.len();
    if python::componentize_py(root).is_ok() {
        let built = build_python(root, &out)?;
        count += built.len();
        rows.extend(built);
    } else {
        let skipped = python::discover(&root.join("extensions"))?.len();
        if skipped > 0 {
            eprintln!(
                "skipping {skipped} Python extension(s): componentize-py is not installed ({})",
                python::INSTALL
            );
        }
    }
    print_table(root, &rows);
    println!(
        "built {count} extension(s) in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds and bundles only the Python extensions into `out`; a missing `componentize-py` is
/// an error naming the command that installs it.
pub(crate) fn run_python(root: &Path, out: &Path) -> Result<()> {
    let rows = build_python(root, out)?;
    print_table(root, &rows);
    Ok(())
}

/// Builds every Python extension under `root/extensions` with `componentize-py` into
/// `target/python-ext/` and bundles it into `out`.
fn build_python(root: &Path, out: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let options = options(&Builder::for_workspace(root), root);
    for extension in python::discover(&root.join("extensions"))? {
        let project = Project {
            extension: extension.clone(),
            language: Language::Python,
        };
        let bundled = project
            .build(&options, out, &mut |line| eprintln!("{line}"))
            .with_context(|| format!("building {}", extension.id()))?;
        rows.push(Row {
            extension: extension.id(),
            version: extension.manifest.extension.version.to_string(),
            target: Target::P2,
            size: bundled.size,
            elapsed: bundled.elapsed,
            bundle: bundled.bundle,
        });
    }
    Ok(rows)
}

/// How this workspace builds projects: `builder`, the venv's `componentize-py` and `wit/`,
/// Python components into `target/python-ext/`.
fn options(builder: &Builder, root: &Path) -> Options {
    Options {
        builder: builder.clone(),
        python: python::Toolchain::workspace(root).map_err(|e| e.to_string()),
        python_out: root.join("target").join("python-ext"),
    }
}

fn print_table(root: &Path, rows: &[Row]) {
    let header = [
        "extension",
        "version",
        "target",
        "wasm bytes",
        "build",
        "bundle",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                row.extension.clone(),
                row.version.clone(),
                row.target.to_string(),
                row.size.to_string(),
                format!("{:.1}s", row.elapsed.as_secs_f64()),
                row.bundle
                    .strip_prefix(root)
                    .unwrap_or(&row.bundle)
                    .display()
                    .to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Right-align the numbers (size and time), left-align the rest.
            if i == 3 || i == 4 {
                text.push_str(&format!("{cell:>width$}  "));
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
}
