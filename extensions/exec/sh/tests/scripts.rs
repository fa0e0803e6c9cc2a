//! The data-driven suite: every `tests/scripts/*.sh` runs through the mock host as a stage's
//! `run:` script, in a workspace holding [`FIXTURES`] with the env `CI=true` and
//! `GREETING=hello world`. The outcome — exit code, outputs, log lines (stdout at info,
//! stderr at warn) and the changes to the workspace — is snapshot-tested with insta
//! (`tests/snapshots/scripts__<name>.snap`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use labhit_sdk::testing::json;
use labhit_sdk::{Command, Level};
use sh::Sh;

/// The workspace every script starts from.
const FIXTURES: &[(&str, &str)] = &[
    ("README.md", "# demo\n"),
    ("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n"),
    (
        "src/lib.rs",
        "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
    ),
    ("data/names.txt", "carol\nalice\nbob\nalice\n"),
    ("data/numbers.txt", "10\n9\n100\n-3\n"),
    (".hidden", "dotfile\n"),
];

/// Every file (with its content) and directory (`None`) under `root`, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let mut work = vec![root.to_path_buf()];
    while let Some(dir) = work.pop() {
        for entry in fs::read_dir(&dir).expect("readable workspace") {
            let path = entry.expect("directory entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("inside the workspace")
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                out.insert(format!("{rel}/"), None);
                work.push(path);
            } else {
                let bytes = fs::read(&path).expect("readable file");
                out.insert(rel, Some(String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

fn push_line(out: &mut String, line: String) {
    out.push_str(&line);
    out.push('\n');
}

fn render_content(out: &mut String, content: &str) {
    for line in content.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(line) => push_line(out, format!("    | {line}")),
            None => push_line(out, format!("    | {line}⏎ (no final newline)")),
        }
    }
}

/// Runs `script` like the suite does and renders the outcome.
fn outcome(script: &str) -> String {
    let mut host = labhit_sdk::mock_host!()
        .env("CI", "true")
        .env("GREETING", "hello world")
        .command(Command::new(script));
    for (path, content) in FIXTURES {
        host = host.file(path, content);
    }
    let before = tree(host.workspace());
    let result = host.run::<Sh>(json!({}));
    let after = tree(host.workspace());

    let mut out = String::new();
    match &result {
        Ok(output) => {
            push_line(&mut out, format!("exit: {}", output.exit_status()));
            let outputs: Vec<String> = output
                .outputs()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            push_line(&mut out, format!("outputs: {}", outputs.join(" ")));
            push_line(
                &mut out,
                format!("snapshot: {}", output.snapshot().unwrap_or("none")),
            );
        }
        Err(err) => push_line(&mut out, format!("error: {err}")),
    }
    push_line(&mut out, "log:".to_owned());
    for entry in host.logs() {
        let stream = match entry.level {
            Level::Info => "out",
            Level::Warn => "err",
            Level::Error => "ERROR",
            Level::Debug | Level::Trace => continue,
        };
        push_line(&mut out, format!("  {stream}| {}", entry.message));
    }
    push_line(&mut out, "workspace:".to_owned());
    let mut changed = false;
    for (path, content) in &after {
        match (before.get(path), content) {
            (None, None) => push_line(&mut out, format!("  + {path}")),
            (None, Some(content)) => {
                push_line(&mut out, format!("  + {path}"));
                render_content(&mut out, content);
            }
            (Some(old), Some(new)) if old.as_ref() != Some(new) => {
                push_line(&mut out, format!("  ~ {path}"));
                render_content(&mut out, new);
            }
            _ => continue,
        }
        changed = true;
    }
    for path in before.keys().filter(|path| !after.contains_key(*path)) {
        push_line(&mut out, format!("  - {path}"));
        changed = true;
    }
    if !changed {
        push_line(&mut out, "  (unchanged)".to_owned());
    }
    out
}

#[test]
fn scripts() {
    insta::glob!("scripts/*.sh", |path| {
        let script = fs::read_to_string(path).unwrap();
        insta::with_settings!({
            description => script.clone(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(outcome(&script));
        });
    });
}
