//! `cargo xtask fuzz`: builds the cargo-fuzz targets in `fuzz/`, seeds their corpora from the
//! repository's test corpus and runs each for a fixed time, failing with the path of the input
//! when libFuzzer finds a crash, a timeout or an out-of-memory.
//!
//! * `cargo xtask fuzz --smoke` runs every target for [`SMOKE_SECS`] seconds (what CI does);
//! * `cargo xtask fuzz --time 1800 borsh policy` runs the named targets for 30 minutes each.
//!
//! The targets are built once with `cargo +nightly fuzz build` (no sanitizer: the code under
//! test forbids `unsafe`, and coverage-guided fuzzing without ASan is several times faster; debug
//! assertions on, so arithmetic overflow is a crash) into `fuzz/target/`, and the binaries are
//! run directly. Seeds are written into `fuzz/corpus/<target>/` (git-ignored, where libFuzzer
//! also keeps what it finds): the pipeline corpus, the manifests of the example extensions and
//! test fixtures, the policy file, every golden vector, the checked-in seeds of
//! `fuzz/seeds/<target>/`, and for `component` the test fixture guest built for `wasm32-wasip2`
//! (a component) and `wasm32-wasip1` (a core module, which the loader adapts). Findings go to
//! `fuzz/artifacts/<target>/`; each run's output to `fuzz/target/logs/<target>.log`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use labhit_guest_build::{Builder, Target};

/// Every fuzz target, in the order they run.
pub(crate) const TARGETS: [&str; 5] = ["pipeline", "manifest", "policy", "borsh", "component"];

/// Seconds per target with `--smoke`.
pub(crate) const SMOKE_SECS: u64 = 20;

/// Seconds per target without `--smoke` or `--time`.
pub(crate) const DEFAULT_SECS: u64 = 300;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Seconds per target.
    pub(crate) secs: u64,
    /// Targets to run; empty means all of [`TARGETS`].
    pub(crate) targets: Vec<String>,
}

/// How one target's run ended.
struct Outcome {
    target: &'static str,
    /// libFuzzer's final statistics line (`#N DONE cov: … exec/s: …`), when it printed one.
    stats: Option<String>,
    /// Inputs libFuzzer wrote as findings (crash, timeout, oom, leak).
    findings: Vec<PathBuf>,
    /// Whether libFuzzer exited with an error.
    failed: bool,
    log: PathBuf,
}

/// Builds, seeds and runs the selected targets.
pub(crate) fn run(root: &Path, options: &Options) -> Result<()> {
    let targets = select(&options.targets)?;
    ensure!(options.secs > 0, "`--time` must be at least 1 second");
    check_tools()?;
    let started = Instant::now();
    build(root)?;
    eprintln!(
        "    built the fuzz targets in {:.0?} (fuzz/target)",
        started.elapsed()
    );
    let bin_dir = root
        .join("fuzz/target")
        .join(host_triple()?)
        .join("release");
    let mut outcomes = Vec::new();
    for target in &targets {
        let count = seed(root, target).with_context(|| format!("seeding `{target}`"))?;
        eprintln!(
            "    {target}: {count} seed(s), running for {} s",
            options.secs
        );
        outcomes.push(run_target(root, &bin_dir, target, options.secs)?);
    }
    report(&outcomes)
}

/// The targets named, checked against [`TARGETS`]; all of them when none is named.
fn select(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(TARGETS.to_vec());
    }
    names
        .iter()
        .map(|name| {
            TARGETS
                .iter()
                .copied()
                .find(|t| t == name)
                .with_context(|| {
                    format!(
                        "unknown fuzz target `{name}`; the targets are {}",
                        TARGETS.join(", ")
                    )
                })
        })
        .collect()
}

/// Whether the nightly toolchain and cargo-fuzz are installed (checked by running them).
pub(crate) fn tools_installed() -> bool {
    nightly_cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn check_tools() -> Result<()> {
    let nightly = nightly_cargo()
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ensure!(
        nightly,
        "the nightly toolchain is not installed; install it with \
         `rustup toolchain install nightly --profile minimal`"
    );
    ensure!(
        tools_installed(),
        "cargo-fuzz is not installed; install it with `cargo install --locked cargo-fuzz`"
    );
    Ok(())
}

/// `cargo +nightly` through the rustup proxy, without the settings of the `cargo xtask`
/// invocation (its toolchain, flags and target directory) leaking in.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly");
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The cargo-fuzz build flags; `cargo +nightly fuzz run TARGET` with the same flags reuses
/// the build.
pub(crate) const BUILD_FLAGS: [&str; 3] = ["--sanitizer", "none", "--debug-assertions"];

fn build(root: &Path) -> Result<()> {
    let status = nightly_cargo()
        .args(["fuzz", "build"])
        .args(BUILD_FLAGS)
        .current_dir(root)
        .status()
        .context("starting `cargo +nightly fuzz build`")?;
    ensure!(
        status.success(),
        "`cargo +nightly fuzz build` exited with {status}"
    );
    Ok(())
}

/// The host's target triple, where cargo-fuzz puts the binaries.
fn host_triple() -> Result<String> {
    let output = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("running `rustc +nightly -vV`")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc +nightly -vV` printed no `host:` line")
}

/// Writes the seeds of `target` into `fuzz/corpus/<target>/`; returns how many there are.
fn seed(root: &Path, target: &str) -> Result<usize> {
    let mut seeds: Vec<(String, Vec<u8>)> = match target {
        "pipeline" => {
            let mut files = files_in(&root.join("tests/data/pipelines/valid"), "yaml")?;
            files.extend(files_in(
                &root.join("tests/data/pipelines/invalid"),
                "yaml",
            )?);
            files.push(root.join("examples/pipeline.yaml"));
            files.push(root.join(".labhit/pipeline.yaml"));
            read_all(root, &files)?
        }
        "manifest" => {
            let mut files = Vec::new();
            for category in dirs_in(&root.join("extensions"))? {
                for extension in dirs_in(&category)? {
                    let manifest = extension.join("extension.toml");
                    if manifest.is_file() {
                        files.push(manifest);
                    }
                }
            }
            files.extend(files_in(
                &root.join("crates/labhit-runtime/tests/fixtures/hostile/manifests"),
                "toml",
            )?);
            files.push(root.join("crates/labhit-runtime/tests/fixtures/probe/extension.toml"));
            files.push(root.join("crates/labhit-wit/tests/fixtures/minimal/extension.toml"));
            read_all(root, &files)?
        }
        "policy" => {
            // The target reads the run's ref from the first line.
            let file = root.join(".labhit/policies.toml");
            let text =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut seeds = Vec::new();
            for git_ref in ["main", "refs/tags/v1.2.0", "release/1.0", "HEAD"] {
                let mut bytes = format!("{git_ref}\n").into_bytes();
                bytes.extend_from_slice(&text);
                seeds.push((format!("policies.toml@{git_ref}"), bytes));
            }
            seeds
        }
        "borsh" => vector_seeds(root)?,
        "component" => component_seeds(root)?,
        other => bail!("no seeds for fuzz target `{other}`"),
    };
    let checked_in = root.join("fuzz/seeds").join(target);
    if checked_in.is_dir() {
        seeds.extend(read_all(root, &files_in(&checked_in, "")?)?);
    }
    let corpus = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut names = BTreeSet::new();
    for (name, bytes) in &seeds {
        let file_name = format!("seed-{}", sanitize(name));
        ensure!(
            names.insert(file_name.clone()),
            "two seeds of `{target}` are both named `{file_name}`"
        );
        let path = corpus.join(&file_name);
        if std::fs::read(&path).is_ok_and(|old| old == *bytes) {
            continue;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(seeds.len())
}

/// A seed name usable as a file name: path separators and odd characters become `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every golden vector as a `borsh` seed: the type's index in `fuzz/wire-types.txt`, then the
/// bytes. Fails when a vector file's type is missing from the list, so a new wire type cannot
/// go unfuzzed.
fn vector_seeds(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let list_path = root.join("fuzz/wire-types.txt");
    let list = std::fs::read_to_string(&list_path)
        .with_context(|| format!("reading {}", list_path.display()))?;
    let types: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    ensure!(
        types.len() <= 256,
        "{} lists more types than one selector byte can pick",
        list_path.display()
    );
    let mut seeds = Vec::new();
    for file in files_in(&root.join("tests/vectors"), "json")? {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("odd file name {}", file.display()))?;
        let index = types.iter().position(|t| *t == stem).with_context(|| {
            format!(
                "wire type `{stem}` (tests/vectors/{stem}.json) is missing from \
                 fuzz/wire-types.txt; add it there and to fuzz/fuzz_targets/borsh.rs"
            )
        })?;
        let selector = u8::try_from(index).context("selector out of range")?;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let vectors = doc["vectors"]
            .as_array()
            .with_context(|| format!("{} has no `vectors` array", file.display()))?;
        for vector in vectors {
            let name = vector["name"].as_str().unwrap_or("unnamed");
            let hex = vector["borsh_hex"]
                .as_str()
                .with_context(|| format!("{}: vector `{name}` has no borsh_hex", file.display()))?;
            let mut bytes = vec![selector];
            bytes.extend(unhex(hex).with_context(|| format!("{}: `{name}`", file.display()))?);
            seeds.push((format!("{stem}@{name}"), bytes));
        }
    }
    Ok(seeds)
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    ensure!(
        text.len().is_multiple_of(2),
        "odd-length hex string ({} digits)",
        text.len()
    );
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .with_context(|| format!("bad hex digits at {i}"))
        })
        .collect()
}

/// The `labhit-wit` test fixture guest, built (or found up to date in `target/guests`) for
/// `wasm32-wasip2` and `wasm32-wasip1`: the component, the core module and its adaptation.
fn component_seeds(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let fixture = root.join("crates/labhit-wit/tests/fixtures/minimal");
    let builder = Builder::for_workspace(root);
    let p2 = builder
        .build(&fixture, Target::P2)
        .context("building the component seed")?;
    let p1 = builder
        .build(&fixture, Target::P1)
        .context("building the core module seed")?;
    // The P1 build writes the adapted component beside cargo's core module
    // (`minimal.component.wasm` next to `minimal.wasm`).
    let core = p1.component.with_file_name(
        p1.component
            .file_stem()
            .map(Path::new)
            .and_then(Path::file_stem)
            .map(|stem| format!("{}.wasm", stem.to_string_lossy()))
            .context("odd component file name")?,
    );
    let mut seeds = Vec::new();
    for (name, path) in [
        ("minimal-p2.wasm", &p2.component),
        ("minimal-p1-core.wasm", &core),
        ("minimal-p1-adapted.wasm", &p1.component),
    ] {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        seeds.push((name.to_owned(), bytes));
    }
    Ok(seeds)
}

/// The subdirectories of `dir`, sorted.
fn dirs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The files of `dir` with extension `ext` (any file when `ext` is empty), sorted.
fn files_in(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .filter(|path| ext.is_empty() || path.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    Ok(files)
}

/// Each file's contents, named by its path relative to `root`.
fn read_all(root: &Path, files: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    files
        .iter()
        .map(|path| {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let name = path
                .strip_prefix(root)
                .unwrap_or(path)
                .display()
                .to_string();
            Ok((name, bytes))
        })
        .collect()
}

/// libFuzzer's `-timeout` (seconds one input may take) for a target.
fn input_timeout(target: &str) -> u64 {
    match target {
        // Compiling a component with Cranelift is slow for big inputs.
        "component" => 30,
        _ => 10,
    }
}

/// Runs one target's binary for `secs` seconds on its corpus.
fn run_target(root: &Path, bin_dir: &Path, target: &'static str, secs: u64) -> Result<Outcome> {
    let binary = bin_dir.join(target);
    ensure!(
        binary.is_file(),
        "`cargo fuzz build` did not produce {}",
        binary.display()
    );
    let corpus = root.join("fuzz/corpus").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    let logs = root.join("fuzz/target/logs");
    for dir in [&artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = logs.join(format!("{target}.log"));
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let before = listing(&artifacts)?;
    let mut prefix = artifacts.clone().into_os_string();
    prefix.push("/");
    let status = Command::new(&binary)
        .arg(&corpus)
        .arg(format!("-max_total_time={secs}"))
        // The smoke run in CI is reproducible (a fixed seed: the same binary and corpus take
        // the same path); longer runs explore with a random one (libFuzzer's `-seed=0`).
        .arg(if secs <= SMOKE_SECS {
            "-seed=1"
        } else {
            "-seed=0"
        })
        .arg(format!("-timeout={}", input_timeout(target)))
        .arg("-rss_limit_mb=4096")
        .arg("-print_final_stats=1")
        .arg({
            let mut arg = std::ffi::OsString::from("-artifact_prefix=");
            arg.push(&prefix);
            arg
        })
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().context("duplicating the log file")?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("starting {}", binary.display()))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let stats = text
        .lines()
        .rev()
        .find(|line| line.contains(" DONE ") || line.starts_with("Done "))
        .map(str::to_owned);
    let mut findings: Vec<PathBuf> = listing(&artifacts)?
        .difference(&before)
        .filter(|name| !name.starts_with("slow-unit-"))
        .map(|name| artifacts.join(name))
        .collect();
    findings.sort();
    Ok(Outcome {
        target,
        stats,
        findings,
        failed: !status.success(),
        log,
    })
}

fn listing(dir: &Path) -> Result<BTreeSet<String>> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect())
}

/// Prints one line per target and fails when any found something.
fn report(outcomes: &[Outcome]) -> Result<()> {
    let mut problems = Vec::new();
    for outcome in outcomes {
        let stats = outcome.stats.as_deref().unwrap_or("(no final statistics)");
        eprintln!("    {}: {stats}", outcome.target);
        if outcome.failed || !outcome.findings.is_empty() {
            let inputs = if outcome.findings.is_empty() {
                "no input was written".to_owned()
            } else {
                outcome
                    .findings
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            eprintln!("{}", tail(&outcome.log, 30));
            let input = outcome
                .findings
                .first()
                .map_or_else(|| "INPUT".to_owned(), |p| p.display().to_string());
            problems.push(format!(
                "fuzz target `{}` failed; input: {inputs}; log: {}; reproduce with \
                 `cargo +nightly fuzz run {} {} {input}`",
                outcome.target,
                outcome.log.display(),
                BUILD_FLAGS.join(" "),
                outcome.target,
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{}", problems.join("\n"))
}

/// The last `lines` lines of a file, indented.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("      | {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
