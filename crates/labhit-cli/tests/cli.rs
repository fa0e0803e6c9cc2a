//! End-to-end tests of the `labhit` binary: exit codes, human and JSON diagnostics, `graph`,
//! `schema`, colors and extension manifests (rule 7).
//!
//! Every test runs the built binary (`CARGO_BIN_EXE_labhit`) in a temporary directory and
//! names files relative to it, so paths in snapshots are stable.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::Run;
use serde_json::Value;

/// A temporary directory to run `labhit` in.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `relative` (creating directories) and returns the relative path.
    fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent directory")).expect("mkdir");
        std::fs::write(path, contents).expect("writing a test file");
        self
    }

    /// Runs `labhit` with `args` here; stdout and stderr are pipes (not terminals).
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        // Colors are what some of these tests are about: none of the color variables is set.
        let mut command = common::labhit(self.path());
        command.env_remove("NO_COLOR").args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        Run::of(&mut command)
    }
}

const VALID: &str = r#"engine: "1"
pipeline:
  name: demo
  stages:
    fetch:
      use: source/git@^1
      with: {depth: 1}
    build:
      after: fetch
      run: |
        cargo build --release
        cargo test
      sandbox: {image: "rust:1.95-slim", timeout: 30m}
    lint:
      after: [fetch]
      run: cargo clippy -- -D warnings
    deploy:
      after: [build, lint]
      use: deploy/kubernetes
      gate: {approval: required, policy: production-deploy}
"#;

/// Several problems at once: engine as a number, a misspelled key, a duplicate key, a cycle.
const BROKEN: &str = r#"engine: 1
pipeline:
  name: demo
  stages:
    fetch:
      use: source/git
      with: {depth: 1}
    build:
      afer: [fetch]
      run: make
    test:
      after: [lint]
      run: make test
      run: make check
    lint:
      after: test
      run: make lint
"#;

#[test]
fn exit_codes() {
    let ws = Workspace::new();
    ws.write("valid.yaml", VALID).write("broken.yaml", BROKEN);
    ws.write("not-utf8.yaml", b"engine: \"1\"\npipeline: \xff\xfe\n");
    std::fs::create_dir(ws.path().join("a-directory")).expect("mkdir");

    // 0: clean, and quiet.
    let ok = ws.run(&["validate", "valid.yaml"]).expect(0);
    assert_eq!(ok.stdout(), "");
    assert_eq!(ok.stderr(), "");
    let verbose = ws.run(&["validate", "--verbose", "valid.yaml"]).expect(0);
    assert_eq!(
        verbose.stderr(),
        "valid.yaml: ok\n1 file checked, no problems\n"
    );

    // 1: problems in a file, including a file that is not UTF-8.
    ws.run(&["validate", "broken.yaml"]).expect(1);
    ws.run(&["validate", "valid.yaml", "broken.yaml"]).expect(1);
    let not_utf8 = ws.run(&["validate", "not-utf8.yaml"]).expect(1);
    assert!(
        not_utf8
            .stdout()
            .contains("not-utf8.yaml:2:11: error[syntax]"),
        "{}",
        not_utf8.stdout()
    );

    // 2: bad usage, as clap reports it.
    ws.run(&["validate", "--no-such-flag"]).expect(2);
    ws.run(&["validate", "--format", "xml", "valid.yaml"])
        .expect(2);
    ws.run(&["graph", "--format", "svg", "valid.yaml"])
        .expect(2);
    ws.run(&["schema", "nothing"]).expect(2);
    ws.run(&[]).expect(2);

    // 3: fatal. The other files are still checked and reported.
    let missing = ws
        .run(&["validate", "missing.yaml", "broken.yaml"])
        .expect(3);
    assert!(
        missing
            .stderr()
            .contains("labhit: error: `missing.yaml` does not exist"),
        "{}",
        missing.stderr()
    );
    assert!(
        missing
            .stdout()
            .contains("broken.yaml:1:9: error[engine-version]")
    );
    let dir = ws.run(&["validate", "a-directory"]).expect(3);
    assert!(
        dir.stderr().contains("`a-directory` is a directory"),
        "{}",
        dir.stderr()
    );
    let default = ws.run(&["validate"]).expect(3);
    assert!(
        default.stderr().contains(".labhit/pipeline.yaml"),
        "{}",
        default.stderr()
    );
    ws.run(&["validate", "--extensions", "no-such-dir", "valid.yaml"])
        .expect(3);
    ws.run(&["graph", "missing.yaml"]).expect(3);

    // The default file is found when present.
    ws.write(".labhit/pipeline.yaml", VALID);
    ws.run(&["validate"]).expect(0);
    ws.run(&["graph"]).expect(0);

    // Help and version are not errors.
    ws.run(&["--version"]).expect(0);
    ws.run(&["validate", "--help"]).expect(0);
}

#[test]
fn help_has_examples_and_exit_codes() {
    let ws = Workspace::new();
    for command in [
        &["--help"][..],
        &["validate", "--help"],
        &["graph", "--help"],
        &["schema", "--help"],
    ] {
        let help = ws.run(command).expect(0).stdout();
        assert!(help.contains("Examples:"), "{command:?}:\n{help}");
        assert!(
            help.contains("Exit codes:") && help.contains("3  fatal"),
            "{command:?}:\n{help}"
        );
    }
    let version = ws.run(&["--version"]).stdout();
    assert_eq!(version, format!("labhit {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn human_output() {
    let ws = Workspace::new();
    ws.write("broken.yaml", BROKEN);
    let run = ws.run(&["validate", "broken.yaml"]).expect(1);
    insta::assert_snapshot!("human_output", run.stdout());
    assert_eq!(run.stderr(), "4 errors in 1 file\n");
}

#[test]
fn human_output_of_every_rule() {
    let ws = Workspace::new();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/pipelines/invalid/all-at-once.yaml");
    let Ok(text) = std::fs::read(&data) else {
        return; // the shared corpus is optional for this crate
    };
    ws.write("all-at-once.yaml", text);
    let run = ws.run(&["validate", "all-at-once.yaml"]).expect(1);
    // Every diagnostic starts with `path:line:col: error[rule]:` and has a snippet.
    let headers = run
        .stdout()
        .lines()
        .filter(|l| l.starts_with("all-at-once.yaml:") && l.contains(": error["))
        .count();
    assert!(headers >= 10, "{}", run.stdout());
    assert!(run.stdout().contains("   = help: "));
}

#[test]
fn json_output() {
    let ws = Workspace::new();
    ws.write("broken.yaml", BROKEN).write("valid.yaml", VALID);
    let run = ws
        .run(&["validate", "--format", "json", "valid.yaml", "broken.yaml"])
        .expect(1);
    assert_eq!(run.stderr(), "");
    let json = run.json();
    assert_eq!(json["errors"], 4);
    assert_eq!(json["warnings"], 0);
    assert_eq!(json["fatal"], 0);
    let files = json["files"].as_array().expect("files");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["path"], "valid.yaml");
    assert_eq!(files[0]["ok"], true);
    assert_eq!(files[0]["diagnostics"], Value::Array(Vec::new()));
    assert_eq!(files[1]["ok"], false);
    assert_eq!(files[1]["kind"], "pipeline");

    let flat = json["diagnostics"].as_array().expect("flat diagnostics");
    assert_eq!(
        flat,
        files[1]["diagnostics"]
            .as_array()
            .expect("file diagnostics")
    );
    let unknown = flat
        .iter()
        .find(|d| d["rule"] == "unknown-key")
        .expect("unknown-key");
    assert_eq!(
        unknown,
        &serde_json::json!({
            "file": "broken.yaml", "line": 9, "column": 7, "end_line": 9, "end_column": 11,
            "rule": "unknown-key", "severity": "error",
            "message": "unknown key `afer` in stage `build`",
            "help": "did you mean `after`?", "related": []
        })
    );
    let duplicate = flat
        .iter()
        .find(|d| d["rule"] == "duplicate-key")
        .expect("duplicate-key");
    assert_eq!(
        (&duplicate["line"], &duplicate["column"]),
        (&14.into(), &7.into())
    );
    assert_eq!(duplicate["related"][0]["file"], "broken.yaml");
    assert_eq!(duplicate["related"][0]["line"], 13);
    assert_eq!(duplicate["related"][0]["column"], 7);
    let engine = flat
        .iter()
        .find(|d| d["rule"] == "engine-version")
        .expect("engine-version");
    assert_eq!(
        (&engine["line"], &engine["column"], &engine["end_column"]),
        (&1.into(), &9.into(), &10.into())
    );

    // A fatal file is in the document too, with its reason.
    let run = ws
        .run(&["validate", "--format", "json", "missing.yaml"])
        .expect(3);
    let json = run.json();
    assert_eq!(json["fatal"], 1);
    assert_eq!(json["files"][0]["ok"], false);
    assert_eq!(json["files"][0]["error"], "`missing.yaml` does not exist");
}

#[test]
fn columns_count_characters() {
    let ws = Workspace::new();
    // `é` and `日本` are one character each per scalar; the misspelled key starts at column 11.
    ws.write(
        "wide.yaml",
        "engine: \"1\"\npipeline:\n  name: demo\n  stages:\n    build: {run: \"日本é\", afer: x}\n",
    );
    let json = ws
        .run(&["validate", "--format", "json", "wide.yaml"])
        .expect(1)
        .json();
    let d = &json["diagnostics"][0];
    assert_eq!(
        (&d["rule"], &d["line"], &d["column"]),
        (&"unknown-key".into(), &5.into(), &25.into())
    );
    let human = ws.run(&["validate", "wide.yaml"]).expect(1).stdout();
    // Two wide characters take four cells: the caret sits under `afer`.
    let lines: Vec<&str> = human.lines().collect();
    let source = lines
        .iter()
        .position(|l| l.starts_with("5 |"))
        .expect("snippet line");
    let key_cell = lines[source].find("afer").expect("key") - "日本é".len() + 5;
    let caret_cell = lines[source + 1].find('^').expect("caret");
    assert_eq!(caret_cell, key_cell, "{human}");
}

const GRAPH: &str = r#"engine: "1"
pipeline:
  name: demo
  stages:
    fetch:
      use: source/git@^1
    build:
      after: fetch
      run: |
        cargo build --release
        cargo test
    lint:
      after: [fetch]
      run: echo "<lint>" && make check#1
    end:
      after: [build, lint]
      use: deploy/kubernetes
      gate: {approval: required, policy: production-deploy}
"#;

#[test]
fn graph_mermaid() {
    let ws = Workspace::new();
    ws.write("p.yaml", GRAPH);
    let run = ws.run(&["graph", "p.yaml"]).expect(0);
    insta::assert_snapshot!("graph_mermaid", run.stdout());
    let explicit = ws
        .run(&["graph", "--format", "mermaid", "p.yaml"])
        .expect(0);
    assert_eq!(explicit.stdout(), run.stdout());
}

#[test]
fn graph_dot() {
    let ws = Workspace::new();
    ws.write("p.yaml", GRAPH);
    let run = ws.run(&["graph", "--format", "dot", "p.yaml"]).expect(0);
    insta::assert_snapshot!("graph_dot", run.stdout());
}

#[test]
fn graph_of_an_invalid_file_prints_diagnostics() {
    let ws = Workspace::new();
    ws.write("broken.yaml", BROKEN);
    let run = ws.run(&["graph", "broken.yaml"]).expect(1);
    assert_eq!(run.stdout(), "");
    assert!(
        run.stderr().contains("broken.yaml:9:7: error[unknown-key]"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().ends_with("4 errors in 1 file\n"),
        "{}",
        run.stderr()
    );
}

fn checked_in_schema(name: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schema")
        .join(name);
    std::fs::read_to_string(path).ok()
}

#[test]
fn schema_matches_the_checked_in_files() {
    let ws = Workspace::new();
    for (which, file) in [
        ("pipeline", "pipeline.schema.json"),
        ("manifest", "extension-manifest.schema.json"),
    ] {
        let run = ws.run(&["schema", which]).expect(0);
        let text = run.stdout();
        let value: Value = serde_json::from_str(&text).expect("the schema is JSON");
        assert!(
            value["$id"].as_str().is_some_and(|id| id.ends_with(file)),
            "{which}: {}",
            value["$id"]
        );
        assert!(text.ends_with("}\n") && !text.ends_with("\n\n"));
        if let Some(expected) = checked_in_schema(file) {
            assert!(
                text == expected,
                "`labhit schema {which}` differs from schema/{file}; run `cargo xtask codegen`"
            );
        }
    }
}

#[test]
fn colors_only_on_request_when_not_a_terminal() {
    let ws = Workspace::new();
    ws.write("broken.yaml", BROKEN)
        .write(".labhit/pipeline.yaml", VALID);
    let esc = |run: &Run| run.stdout().contains('\u{1b}') || run.stderr().contains('\u{1b}');
    // Pipes are not terminals: no colors by default, even when TERM says it could.
    let plain = ws
        .run_with(&["validate", "broken.yaml"], &[("TERM", "xterm-256color")])
        .expect(1);
    assert!(!esc(&plain));
    assert!(!esc(&ws.run(&["graph", "broken.yaml"]).expect(1)));
    assert!(!esc(&ws.run(&["validate", "missing.yaml"]).expect(3)));
    assert!(!esc(&ws
        .run(&["validate", "--color", "never", "broken.yaml"])
        .expect(1)));
    // `--color always` colors; `auto` with NO_COLOR does not.
    let colored = ws
        .run(&["validate", "--color", "always", "broken.yaml"])
        .expect(1);
    assert!(esc(&colored));
    assert!(!esc(&ws
        .run_with(
            &["validate", "--color", "auto", "broken.yaml"],
            &[("NO_COLOR", "1")]
        )
        .expect(1)));
    // Colors change nothing but the escapes.
    let stripped = strip_ansi(&colored.stdout());
    assert_eq!(stripped, plain.stdout());
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn manifest(category: &str, name: &str, version: &str, extra: &str) -> String {
    format!(
        "[extension]\ncategory = \"{category}\"\nname = \"{name}\"\nversion = \"{version}\"\ncontract = \"^0.2\"\n\
         description = \"test extension\"\ncomponent = \"{name}.wasm\"\n{extra}"
    )
}

const RULE7: &str = r#"engine: "1"
pipeline:
  name: rule7
  stages:
    fetch:
      use: source/git@^2
    clone:
      use: source/git
      with:
        depth: deep
    build:
      use: build/make
      run: make
    deploy:
      use: deploy/kubernets
    shell:
      use: exec/shell
      run: make
"#;

#[test]
fn rule_7_with_extension_manifests() {
    let ws = Workspace::new();
    ws.write(
        "exts/source/git/extension.toml",
        manifest(
            "source",
            "git",
            "1.4.0",
            "\n[inputs]\ntype = \"object\"\n[inputs.properties.depth]\ntype = \"integer\"\nminimum = 1\n",
        ),
    )
    .write("exts/build/make/extension.toml", manifest("build", "make", "0.3.0", ""))
    .write("exts/deploy/kubernetes/extension.toml", manifest("deploy", "kubernetes", "1.0.0", ""))
    .write(
        "more/exec/extension.toml",
        manifest("exec", "shell", "0.1.0", "[capabilities]\nexecutor = true\n"),
    )
    .write("exts/.hidden/extension.toml", "not = [toml")
    // Bundles hold their component (the registry only reads its header here).
    .write("exts/source/git/git.wasm", "\0asm\x0d\0\x01\0")
    .write("exts/build/make/make.wasm", "\0asm\x0d\0\x01\0")
    .write("exts/deploy/kubernetes/kubernetes.wasm", "\0asm\x0d\0\x01\0")
    .write("more/exec/shell.wasm", "\0asm\x0d\0\x01\0")
    .write("rule7.yaml", RULE7)
    .write("valid.yaml", "engine: \"1\"\npipeline:\n  name: ok\n  stages:\n    clone: {use: source/git, with: {depth: 3}}\n");

    let run = ws
        .run(&[
            "validate",
            "--format",
            "json",
            "--extensions",
            "exts",
            "--extensions",
            "more",
            "rule7.yaml",
        ])
        .expect(1);
    let json = run.json();
    let paths: Vec<&str> = json["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "exts/build/make/extension.toml",
            "exts/deploy/kubernetes/extension.toml",
            "exts/source/git/extension.toml",
            "more/exec/extension.toml",
            "rule7.yaml"
        ]
    );
    let found: Vec<(String, u64, u64)> = json["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            (
                d["rule"].as_str().unwrap_or_default().to_owned(),
                d["line"].as_u64().unwrap_or_default(),
                d["column"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let expected = [
        ("extension-version", 6, 12),
        ("input-schema", 10, 16),
        ("not-an-executor", 13, 12),
        ("unknown-extension", 15, 12),
    ];
    assert_eq!(
        found,
        expected.map(|(r, l, c)| (r.to_owned(), l, c)),
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    let unknown = &json["diagnostics"][3];
    assert_eq!(unknown["help"], "did you mean `deploy/kubernetes`?");

    // Human form of the same run.
    let human = ws
        .run(&[
            "validate",
            "--extensions",
            "exts",
            "--extensions",
            "more",
            "rule7.yaml",
        ])
        .expect(1);
    assert!(
        human
            .stdout()
            .contains("rule7.yaml:10:16: error[input-schema]: stage `clone`: `with.depth`"),
        "{}",
        human.stdout()
    );

    // The same manifests accept a good file; without `--extensions` rule 7 does not run.
    ws.run(&["validate", "--extensions", "exts", "valid.yaml"])
        .expect(0);
    ws.run(&["validate", "rule7.yaml"]).expect(0);
}

/// A file with a problem elsewhere, an input misspelled at the top and one level down, a
/// value of the wrong type, and output references (which the schema cannot judge before the
/// run, and which must name declared outputs).
const INPUTS: &str = r#"engine: "1"
pipeline:
  name: inputs
  stages:
    report:
      use: test/junit
      with: {reprots: ["x"], fail-on-skipped: maybe}
    sum:
      use: util/checksum
      with:
        patterns: ["dist/**"]
        algorithm: ${{ stages.report.outputs.tests }}
      after: report
      sandbox: {timeout: 5}
    render:
      after: sum
      use: deploy/render
      with:
        output: out.txt
        template: "{{ d }}"
        values: {d: "${{ stages.sum.outputs.digset }}"}
        extra: {nested: 1}
"#;

#[test]
fn with_is_checked_against_inputs_while_other_problems_exist_pointing_at_the_key() {
    let ws = Workspace::new();
    ws.write("inputs.yaml", INPUTS);
    // The built example bundles (the registry reads each bundle's component).
    let extensions = common::example_extensions().0.path();
    let run = ws
        .run(&[
            "validate",
            "--format",
            "json",
            "--extensions",
            extensions.to_str().expect("utf-8 path"),
            "inputs.yaml",
        ])
        .expect(1);
    let json = run.json();
    let found: Vec<(String, u64, u64, String)> = json["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            (
                d["rule"].as_str().unwrap_or_default().to_owned(),
                d["line"].as_u64().unwrap_or_default(),
                d["column"].as_u64().unwrap_or_default(),
                d["help"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("input-schema", 7, 13, ""),
        ("input-schema", 7, 14, "did you mean `reports`?"),
        ("input-schema", 7, 47, ""),
        (
            "invalid-type",
            14,
            26,
            "add a unit, e.g. `90s`, `30m` or `1h30m`",
        ),
        ("undeclared-output", 21, 22, "did you mean `digest`?"),
        (
            "input-schema",
            22,
            9,
            "declared here: output, template, template-file, values",
        ),
    ];
    assert_eq!(
        found,
        expected.map(|(r, l, c, h)| (r.to_owned(), l, c, h.to_owned())),
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    let messages: Vec<&str> = json["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter_map(|d| d["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"stage `report`: `with.reprots` is not an input of `test/junit` 0.1.0"),
        "{messages:?}"
    );
    assert!(
        !messages.iter().any(|m| m.contains("Additional properties")),
        "unknown keys are reported once, at the key: {messages:?}"
    );
}

#[test]
fn broken_manifests_are_diagnostics_of_the_manifest() {
    let ws = Workspace::new();
    ws.write(
        "exts/git/extension.toml",
        manifest("source", "git", "1.0.0", "colour = \"blue\"\n"),
    )
    .write("valid.yaml", VALID);
    let run = ws
        .run(&[
            "validate",
            "--format",
            "json",
            "--extensions",
            "exts",
            "valid.yaml",
        ])
        .expect(1);
    let json = run.json();
    let first = &json["diagnostics"][0];
    assert_eq!(first["file"], "exts/git/extension.toml");
    assert_eq!(first["rule"], "unknown-key");
    assert_eq!(first["line"], 8);
    assert_eq!(json["files"][0]["kind"], "manifest");

    // An empty extensions directory is a warning, and every `use` is unknown.
    std::fs::create_dir(ws.path().join("empty")).expect("mkdir");
    let run = ws
        .run(&["validate", "--extensions", "empty", "valid.yaml"])
        .expect(1);
    assert!(
        run.stderr()
            .contains("warning: no `extension.toml` found in `empty`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn standard_input() {
    let ws = Workspace::new();
    let mut child = common::labhit(ws.path())
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning labhit");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(BROKEN.as_bytes()).expect("writing stdin");
    }
    let output = child.wait_with_output().expect("waiting for labhit");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        stdout.starts_with("<stdin>:1:9: error[engine-version]"),
        "{stdout}"
    );
}

#[test]
fn oversized_files_are_diagnostics_not_fatal() {
    let ws = Workspace::new();
    let path: PathBuf = ws.path().join("huge.yaml");
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(17 << 20).expect("a sparse 17 MiB file");
    let json = ws
        .run(&["validate", "--format", "json", "huge.yaml"])
        .expect(1)
        .json();
    assert_eq!(json["diagnostics"][0]["rule"], "input-limit");
    assert_eq!(
        json["diagnostics"][0]["message"],
        format!(
            "file is {} bytes, more than the limit of {} bytes",
            17 << 20,
            16 << 20
        )
    );
}

/// Runs `labhit` in `dir` and fails the test (killing `labhit`) when it has not ended
/// within a minute: a hang must be a failure, not a test that never stops.
fn run_within_a_minute(dir: &Path, args: &[&str]) -> Run {
    let mut child = common::labhit(dir)
        .args(args)
        .env("XDG_DATA_HOME", dir.join("no-data-home"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running labhit");
    let pid = child.id();
    let (done, outcome) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        let read = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
        let status = child.wait().expect("waiting for labhit");
        let _ = done.send(Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        });
    });
    match outcome.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(output) => Run(output),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("`labhit {}` hung", args.join(" "));
        }
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A one-line JSON pipeline of about 114 KB whose one typo (`aftr`) sits past column 65,535.
fn one_line_json_pipeline() -> String {
    let mut stages: Vec<String> = (0..2_000)
        .map(|i| {
            format!(
                "\"stage-{i:04}\": {{\"run\": \"echo {i} {}\"}}",
                "x".repeat(20)
            )
        })
        .collect();
    stages.push("\"last\": {\"run\": \"echo\", \"aftr\": [\"stage-0000\"]}".to_owned());
    format!(
        "{{\"engine\": \"1\", \"pipeline\": {{\"name\": \"wide\", \"stages\": {{{}}}}}}}\n",
        stages.join(", ")
    )
}

#[test]
fn a_problem_far_along_one_long_line_is_shown_clipped() {
    let ws = Workspace::new();
    let text = one_line_json_pipeline();
    let column = text.find("\"aftr\"").expect("the typo") + 1;
    assert!(text.len() > 110_000 && column > 65_535, "{column}");
    ws.write("wide.json", &text);
    std::fs::create_dir(ws.path().join("ext")).expect("mkdir");
    let at = format!("wide.json:1:{column}: error[unknown-key]: unknown key `aftr`");

    let validate = run_within_a_minute(ws.path(), &["validate", "wide.json"]).expect(1);
    let shown = validate.stdout();
    assert!(shown.contains(&at), "{shown}");
    assert!(
        shown.contains("1 | …"),
        "the line is cut before the caret: {shown}"
    );
    assert!(shown.len() < 2_000, "{} bytes:\n{shown}", shown.len());
    let caret_line = shown
        .lines()
        .find(|l| l.contains('^'))
        .expect("a caret line");
    let text_line = shown
        .lines()
        .find(|l| l.starts_with("1 | "))
        .expect("the line");
    let caret = caret_line.find('^').expect("caret");
    let under: String = text_line.chars().skip(caret).take(6).collect();
    assert_eq!(under, "\"aftr\"", "the caret points at the key:\n{shown}");

    let graph = run_within_a_minute(ws.path(), &["graph", "wide.json"]).expect(1);
    assert!(graph.stderr().contains(&at), "{}", graph.stderr());
    assert!(graph.stderr().len() < 2_000);

    let run = run_within_a_minute(
        ws.path(),
        &[
            "run",
            "wide.json",
            "--extensions",
            "ext",
            "--run-dir",
            "runs",
            "--cache-dir",
            "cache",
        ],
    )
    .expect(1);
    assert!(run.stderr().contains(&at), "{}", run.stderr());
    assert!(run.stderr().len() < 2_000, "{}", run.stderr());

    let json = run_within_a_minute(ws.path(), &["validate", "--format", "json", "wide.json"])
        .expect(1)
        .json();
    assert_eq!(json["diagnostics"][0]["column"], column);
    assert_eq!(json["diagnostics"][0]["line"], 1);
}

#[test]
fn ten_thousand_problems_print_a_bounded_report_quickly() {
    // 10,000 stages, each waiting for a stage that does not exist: the "did you mean" case
    // that took minutes, and more diagnostics than any report should print.
    let ws = Workspace::new();
    let mut text = "engine: \"1\"\npipeline:\n  name: many\n  stages:\n".to_owned();
    for i in 0..10_000 {
        text.push_str(&format!(
            "    stage-{i:05}:\n      run: echo\n      after: [stage-{i:05}x]\n"
        ));
    }
    ws.write("many.yaml", &text);
    let human = run_within_a_minute(ws.path(), &["validate", "many.yaml"]).expect(1);
    let out = human.stdout();
    assert_eq!(out.matches("error[unknown-stage]").count(), 100, "{out}");
    assert!(
        out.contains("… 9900 more problems not shown"),
        "{}",
        &out[out.len().saturating_sub(500)..]
    );
    assert!(
        out.contains("help: did you mean `stage-00000`?"),
        "the first ones get suggestions"
    );
    assert!(human.stderr().contains("10000 errors in 1 file"));

    let json = run_within_a_minute(ws.path(), &["validate", "--format", "json", "many.yaml"])
        .expect(1)
        .json();
    assert_eq!(json["errors"], 10_000);
    assert_eq!(json["omitted"], 9_000);
    assert_eq!(json["files"][0]["omitted"], 9_000);
    assert_eq!(
        json["files"][0]["diagnostics"].as_array().map(Vec::len),
        Some(1_000)
    );
    assert_eq!(json["diagnostics"].as_array().map(Vec::len), Some(1_000));
}

#[cfg(unix)]
#[test]
fn pipelines_that_are_not_regular_files_are_fatal_and_never_block() {
    let ws = Workspace::new();
    mkfifo(&ws.path().join("fifo.yaml"));
    std::os::unix::fs::symlink("/dev/zero", ws.path().join("zero.yaml")).expect("symlink");
    std::fs::create_dir(ws.path().join("dir.yaml")).expect("mkdir");
    std::fs::create_dir(ws.path().join("ext")).expect("mkdir");
    let cases = [
        ("fifo.yaml", "`fifo.yaml` is a FIFO, not a regular file"),
        (
            "zero.yaml",
            "`zero.yaml` is a character device, not a regular file",
        ),
        ("dir.yaml", "`dir.yaml` is a directory"),
    ];
    for (file, reason) in cases {
        let commands: [&[&str]; 3] = [
            &["validate", file],
            &["graph", file],
            &[
                "run",
                file,
                "--extensions",
                "ext",
                "--run-dir",
                "runs",
                "--cache-dir",
                "cache",
            ],
        ];
        for args in commands {
            let run = run_within_a_minute(ws.path(), args).expect(3);
            assert!(run.stderr().contains(reason), "{args:?}: {}", run.stderr());
        }
    }
}

/// A bundle directory `dir/name` with a manifest naming `name.wasm` (not written).
fn fake_bundle(dir: &Path, name: &str, version: &str) -> PathBuf {
    let bundle = dir.join(name);
    std::fs::create_dir_all(&bundle).expect("mkdir");
    std::fs::write(
        bundle.join("extension.toml"),
        manifest("util", name, version, ""),
    )
    .expect("write");
    bundle
}

#[cfg(unix)]
#[test]
fn extension_files_that_are_not_regular_or_too_large_are_refused_promptly() {
    let ws = Workspace::new();
    let ext = ws.path().join("ext");
    // A FIFO, a link to /dev/zero, a directory and a 300 MiB (sparse) file as components.
    let fifo = fake_bundle(&ext, "fifo", "0.1.0");
    mkfifo(&fifo.join("fifo.wasm"));
    let zero = fake_bundle(&ext, "zero", "0.1.0");
    std::os::unix::fs::symlink("/dev/zero", zero.join("zero.wasm")).expect("symlink");
    let dir = fake_bundle(&ext, "dir", "0.1.0");
    std::fs::create_dir(dir.join("dir.wasm")).expect("mkdir");
    let big = fake_bundle(&ext, "big", "0.1.0");
    let file = std::fs::File::create(big.join("big.wasm")).expect("create");
    file.set_len(300 << 20).expect("a sparse file");
    drop(file);
    // A FIFO as the manifest itself.
    std::fs::create_dir_all(ext.join("fifo-manifest")).expect("mkdir");
    mkfifo(&ext.join("fifo-manifest/extension.toml"));

    let cases = [
        (&fifo, "fifo.wasm` is a FIFO, not a regular file"),
        (
            &zero,
            "resolves to `/dev/zero`, outside the bundle directory",
        ),
        (&dir, "dir.wasm` is a directory, not a regular file"),
        (&big, "more than the limit of 256 MiB for a component"),
    ];
    for (bundle, reason) in cases {
        let manifest = bundle.join("extension.toml");
        let shown = manifest.to_str().expect("UTF-8");
        let run = run_within_a_minute(ws.path(), &["ext", "check", shown]).expect(1);
        assert!(run.stdout().contains(reason), "{shown}: {}", run.stdout());
    }
    let run = run_within_a_minute(
        ws.path(),
        &["ext", "check", "ext/fifo-manifest/extension.toml"],
    )
    .expect(3);
    assert!(
        run.stderr()
            .contains("`ext/fifo-manifest/extension.toml` is a FIFO, not a regular file"),
        "{}",
        run.stderr()
    );

    let list = run_within_a_minute(
        ws.path(),
        &["ext", "list", "--extensions", "ext", "--format", "json"],
    )
    .expect(1);
    let json = list.json();
    assert_eq!(
        json["bundles"].as_array().map(Vec::len),
        Some(0),
        "{json:#}"
    );
    let reasons: Vec<String> = json["invalid"]
        .as_array()
        .expect("invalid")
        .iter()
        .map(|i| format!("{}: {}", i["path"], i["reason"]))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:#?}");
    for needle in [
        "big.wasm` is not a WebAssembly file",
        "fifo.wasm` is a FIFO",
        "outside the bundle directory",
        "dir.wasm` is a directory",
        "fifo-manifest/extension.toml` is a FIFO",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "{needle}: {reasons:#?}"
        );
    }
}

#[cfg(unix)]
#[test]
fn policy_files_that_are_not_regular_or_too_large_deny_gates_without_blocking() {
    let pipeline =
        "engine: \"1\"\npipeline:\n  name: p\n  stages:\n    hello:\n      run: echo hi\n";
    type Make = fn(&Path);
    let cases: [(&str, Make); 3] = [
        ("is a FIFO, not a regular file", |p| mkfifo(p)),
        ("is a character device, not a regular file", |p| {
            std::os::unix::fs::symlink("/dev/zero", p).expect("symlink");
        }),
        ("more than the limit of 1 MiB for a policy file", |p| {
            // Real bytes (the project is copied into the run workspace).
            std::fs::write(p, vec![b'#'; 2 << 20]).expect("write");
        }),
    ];
    for (reason, make) in cases {
        let ws = Workspace::new();
        ws.write("pipeline.yaml", pipeline);
        std::fs::create_dir_all(ws.path().join(".labhit")).expect("mkdir");
        std::fs::create_dir(ws.path().join("ext")).expect("mkdir");
        make(&ws.path().join(".labhit/policies.toml"));
        let state = tempfile::tempdir().expect("tempdir");
        let runs = state.path().join("runs");
        let cache = state.path().join("cache");
        let run = run_within_a_minute(
            ws.path(),
            &[
                "run",
                "pipeline.yaml",
                "--extensions",
                "ext",
                "--run-dir",
                runs.to_str().expect("UTF-8"),
                "--cache-dir",
                cache.to_str().expect("UTF-8"),
            ],
        )
        .expect(0);
        assert!(
            run.stderr().contains("every policy gate will be denied")
                && run.stderr().contains(reason),
            "{reason}: {}",
            run.stderr()
        );
    }
}

#[test]
fn extension_directories_and_bundles_are_treated_alike_by_every_command() {
    let ws = Workspace::new();
    ws.write(
        "pipeline.yaml",
        "engine: \"1\"\npipeline:\n  name: p\n  stages:\n    hello:\n      run: echo hi\n",
    );
    // A directory named with `--extensions` that does not exist is fatal everywhere.
    let state = tempfile::tempdir().expect("tempdir");
    let runs = state.path().join("runs");
    let cache = state.path().join("cache");
    let run_args = |extensions: &str| -> Vec<String> {
        [
            "run",
            "pipeline.yaml",
            "--extensions",
            extensions,
            "--run-dir",
            runs.to_str().expect("UTF-8"),
            "--cache-dir",
            cache.to_str().expect("UTF-8"),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let missing = "extensions directory `nope` does not exist";
    let run_missing = run_args("nope");
    let run_missing: Vec<&str> = run_missing.iter().map(String::as_str).collect();
    let commands: [&[&str]; 4] = [
        &run_missing,
        &["validate", "pipeline.yaml", "--extensions", "nope"],
        &["ext", "list", "--extensions", "nope"],
        &["ext", "check", "util/x", "--extensions", "nope"],
    ];
    for args in commands {
        let run = run_within_a_minute(ws.path(), args).expect(3);
        assert!(run.stderr().contains(missing), "{args:?}: {}", run.stderr());
    }

    // The same version installed twice: `run` warns like `ext list` reports.
    let wasm = b"\0asm\x0d\x00\x01\x00";
    for dir in ["a", "b"] {
        let bundle = fake_bundle(&ws.path().join(dir), "twice", "0.1.0");
        std::fs::write(bundle.join("twice.wasm"), wasm).expect("write");
    }
    let conflict = "`util/twice@0.1.0` is installed more than once; using a/twice/extension.toml, ignoring b/twice/extension.toml";
    let list = run_within_a_minute(
        ws.path(),
        &["ext", "list", "--extensions", "a", "--extensions", "b"],
    )
    .expect(1);
    assert!(
        list.stdout().contains(&format!("conflict: {conflict}")),
        "{}",
        list.stdout()
    );
    let mut args = run_args("a");
    args.extend(["--extensions".to_owned(), "b".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_within_a_minute(ws.path(), &args).expect(0);
    assert!(
        run.stderr()
            .contains(&format!("labhit: warning: {conflict}")),
        "{}",
        run.stderr()
    );

    // `--extensions` beats a newer version in LABHIT_EXTENSIONS.
    let newer = fake_bundle(&ws.path().join("env"), "twice", "0.2.0");
    std::fs::write(newer.join("twice.wasm"), wasm).expect("write");
    let check = ws.run_with(
        &["ext", "check", "util/twice", "--extensions", "a"],
        &[("LABHIT_EXTENSIONS", "env")],
    );
    assert!(
        check.stdout().contains("checking a/twice/extension.toml"),
        "{}",
        check.stdout()
    );
}

#[cfg(unix)]
#[test]
fn a_component_linked_from_outside_its_bundle_is_refused() {
    let ws = Workspace::new();
    let bundle = fake_bundle(&ws.path().join("ext"), "linked", "0.1.0");
    ws.write("elsewhere/real.wasm", b"\0asm\x0d\x00\x01\x00");
    std::os::unix::fs::symlink(
        ws.path().join("elsewhere/real.wasm"),
        bundle.join("linked.wasm"),
    )
    .expect("symlink");
    let list = run_within_a_minute(ws.path(), &["ext", "list", "--extensions", "ext"]).expect(1);
    assert!(
        list.stdout().contains("outside the bundle directory"),
        "{}",
        list.stdout()
    );
    let check = run_within_a_minute(ws.path(), &["ext", "check", "ext/linked"]).expect(1);
    assert!(
        check.stdout().contains("outside the bundle directory"),
        "{}",
        check.stdout()
    );
}
