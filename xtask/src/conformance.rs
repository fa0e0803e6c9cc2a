//! `cargo xtask conformance`: runs the second, independent implementation of the wire
//! encodings, `tools/conformance/borsh_check.py` (Python standard library only), which
//! decodes and re-encodes every golden vector using nothing but
//! `schema/wire/borsh-layout.json`. `cargo xtask ci` runs it, and so does a test below.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// The checker, relative to the workspace root.
pub(crate) const SCRIPT: &str = "tools/conformance/borsh_check.py";

/// The Python interpreter: `$PYTHON` or `python3`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Runs the checker with `args` and returns its output (whatever its exit status).
pub(crate) fn check(root: &Path, args: &[&str]) -> Result<Output> {
    let python = python();
    Command::new(&python)
        .arg(root.join(SCRIPT))
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| {
            format!(
                "starting `{python}` to run {SCRIPT}; install Python 3 or set PYTHON to its path"
            )
        })
}

/// Runs the checker on the checked-in layout and vectors; fails unless every vector
/// round-trips.
pub(crate) fn run(root: &Path) -> Result<()> {
    let output = check(root, &[])?;
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        bail!(
            "{SCRIPT} exited with {}: a golden vector does not round-trip through \
             schema/wire/borsh-layout.json",
            output.status
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// The acceptance check: 100 % of the golden vectors round-trip from the layout alone.
    #[test]
    fn every_golden_vector_round_trips_through_the_python_decoder() {
        let root = crate::project_root();
        let output = check(&root, &[]).expect("python3 runs");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            text(&output.stderr)
        );
        let counts = stdout
            .split_whitespace()
            .find(|word| word.contains('/'))
            .expect("a passed/total count");
        let (passed, total) = counts.split_once('/').expect("passed/total");
        assert_eq!(passed, total, "{stdout}");
        assert!(total.parse::<u32>().expect("a number") >= 85, "{stdout}");
    }

    /// Runs the checker against a layout changed by `mutate` and returns its output.
    fn with_mutated_layout(mutate: impl FnOnce(&mut Value)) -> Output {
        let root = crate::project_root();
        let text = std::fs::read_to_string(root.join(crate::codegen::LAYOUT_PATH))
            .expect("layout readable");
        let mut layout: Value = serde_json::from_str(&text).expect("layout is JSON");
        mutate(&mut layout);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("borsh-layout.json");
        std::fs::write(&path, layout.to_string()).expect("write layout");
        let path = path.to_str().expect("UTF-8 temp path").to_owned();
        check(&root, &["--layout", &path]).expect("python3 runs")
    }

    /// The decoder follows the layout, not a copy of our types: a layout with two fields
    /// swapped makes the vectors of that type fail, naming them.
    #[test]
    fn the_python_decoder_fails_on_a_wrong_field_order() {
        let output = with_mutated_layout(|layout| {
            let fields = layout["types"]["ArtifactRef"]["fields"]
                .as_array_mut()
                .expect("ArtifactRef has fields");
            fields.swap(1, 2);
        });
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("artifact-ref.json: example:"), "{stderr}");
        assert!(!stderr.contains("Traceback"), "{stderr}");
    }

    /// Enum tag order matters too: swapping two variants' tags breaks their vectors.
    #[test]
    fn the_python_decoder_fails_on_a_wrong_enum_tag() {
        let output = with_mutated_layout(|layout| {
            let variants = layout["types"]["RunStatus"]["variants"]
                .as_array_mut()
                .expect("RunStatus has variants");
            variants[0]["tag"] = 1.into();
            variants[1]["tag"] = 0.into();
        });
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("run-status.json: queued:"), "{stderr}");
    }

    /// A broken layout is reported per vector, never as a Python traceback.
    #[test]
    fn the_python_decoder_reports_a_malformed_layout() {
        let output = with_mutated_layout(|layout| {
            layout["types"]["LogEntry"]["fields"][0]["type"] = "no_such_type".into();
        });
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("`no_such_type` is neither a primitive nor a described type"),
            "{stderr}"
        );
        assert!(!stderr.contains("Traceback"), "{stderr}");
    }
}
