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
//! `labhit-guest-build`, which the host tests of `labhit-wit` share.
//!
//! Python extensions (a directory with `extension.toml` and `app.py`, see
//! `labhit_guest_build::python`) are built with the pinned `componentize-py` into
//! `target/python-ext/` and bundled the same way when its venv exists
//! (`bash tools/python-ext/install.sh`, which `cargo xtask ci` runs); without it they are
//! skipped with a note naming that command.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
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
            eprintln!("building {} for {target}", extension.id());
            let built = builder
                .build(&extension.dir, target)
                .with_context(|| format!("building {}", extension.id()))?;
            let bundle = extension.bundle(&built.component, out)?;
            rows.push(Row {
                extension: extension.id(),
                version: extension.manifest.extension.version.to_string(),
                target,
                size: built.size,
                elapsed: built.elapsed,
                bundle,
            });
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
    for extension in python::discover(&root.join("extensions"))? {
        eprintln!("building {} with componentize-py", extension.id());
        let built = python::build(root, &extension, &root.join("target").join("python-ext"))
            .with_context(|| format!("building {}", extension.id()))?;
        let bundle = extension.bundle(&built.component, out)?;
        rows.push(Row {
            extension: extension.id(),
            version: extension.manifest.extension.version.to_string(),
            target: Target::P2,
            size: built.size,
            elapsed: built.elapsed,
            bundle,
        });
    }
    Ok(rows)
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
