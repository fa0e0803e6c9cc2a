//! `exec/sh`: an executor extension that runs a stage's `run:` script in a sandboxed
//! interpreter for a documented subset of POSIX sh.
//!
//! WebAssembly components cannot start processes, so every command is a builtin working on
//! the workspace (preopened at `/workspace`): `echo`, `printf`, `cat`, `mkdir`, `cp`, `grep`,
//! `test`, … (see [`builtins`]). What the shell supports works like sh; everything else is
//! refused before the script starts (`while`, `$(…)`, subshells, …) or, for an unknown
//! command, fails it with status 127 — never silently misread.
//!
//! The host decides caching and the executor obeys: a `Hit` skips the script (the host has
//! restored the workspace), a successful `MissBuildAs` reports the committed tag, a failure
//! or `MissNoCommit` commits nothing.
//!
//! Host imports used: the read-write workspace, `log` (stdout lines at info, stderr lines at
//! warn), `cancellation` (checked before every command), outputs and artifacts.
//!
//! | module | job |
//! |---|---|
//! | [`lex`], [`parse`], [`ast`] | script text → tokens → syntax tree with positions; refusals |
//! | [`expand`], [`vars`], [`pattern`] | parameters, quote removal, pathname expansion |
//! | [`interp`], [`io`] | running the tree: control flow, errexit, pipelines, redirections |
//! | [`builtins`] | the commands |
//! | [`fs`] | workspace paths: resolution against the current directory, refusal of escapes |

#![warn(missing_docs)]

pub mod ast;
pub mod builtins;
pub mod expand;
pub mod fs;
pub mod interp;
pub mod io;
pub mod lex;
pub mod parse;
pub mod pattern;
pub mod vars;

use labhit_sdk::{
    CacheDecision, Context, Error, Extension, Input, Output, TypedOutputs, debug, info, warn,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::interp::{Ending, Shell};

/// The stage's `with`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Glob patterns of workspace files to report as artifacts after a successful script.
    #[serde(default)]
    pub artifacts: Vec<String>,
}

/// The named outputs: the source of the manifest's `[outputs]` (`labhit ext build` checks
/// one against the other).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// Number of simple commands executed.
    pub commands: u64,
    /// Exit status of the script (0 on a cache hit).
    pub exit_code: i32,
}

/// The extension.
pub struct Sh;

impl Extension for Sh {
    type Config = Config;

    fn execute(ctx: &Context, input: Input<Config>) -> Result<Output, Error> {
        let Some(command) = input.command.as_ref() else {
            return Err(Error::invalid_config(
                "exec/sh runs `run:` scripts: give the stage a `run` script (`use: exec/sh` with `run:`)",
            ));
        };
        // Refuse bad artifact patterns before running anything.
        for pattern in &input.config.artifacts {
            labhit_sdk::glob::Glob::new(pattern)
                .map_err(|err| Error::invalid_config(format!("`artifacts`: {err}")))?;
        }
        if let Some(parent) = &command.parent_snapshot {
            debug!(
                ctx,
                "the workspace already carries the effects of upstream snapshot `{parent}`"
            );
        }
        if let Some(image) = &command.image {
            warn!(
                ctx,
                "`sandbox.image` ({image}) is not used: exec/sh runs scripts inside the WebAssembly sandbox"
            );
        }
        if command.cpu_millicores.is_some() {
            warn!(
                ctx,
                "`sandbox.resources.cpu` is not used: exec/sh runs scripts inside the WebAssembly sandbox"
            );
        }
        if command.memory_bytes.is_some() {
            warn!(
                ctx,
                "`sandbox.resources.memory` is not used: exec/sh is limited by the memory of its manifest"
            );
        }
        if let Some(timeout) = command.timeout_ms {
            debug!(ctx, "the host enforces a timeout of {timeout} ms");
        }

        let (exit_code, commands, commit) = match &command.cache {
            CacheDecision::Hit(tag) => {
                info!(
                    ctx,
                    "cache hit `{tag}`: the host restored the workspace; script skipped"
                );
                (0, 0, None)
            }
            CacheDecision::MissBuildAs(tag) => {
                let (code, commands) = run_script(ctx, &command.script, &input.env)?;
                (code, commands, Some(tag.clone()))
            }
            CacheDecision::MissNoCommit => {
                let (code, commands) = run_script(ctx, &command.script, &input.env)?;
                (code, commands, None)
            }
        };

        let mut output = Self::output(&Outputs {
            commands,
            exit_code,
        })?
        .exit_code(exit_code);
        if exit_code != 0 {
            return Ok(output);
        }
        if let Some(tag) = commit {
            output = output.committed_snapshot(tag);
        }
        for pattern in &input.config.artifacts {
            let paths = ctx.glob(std::slice::from_ref(pattern))?;
            if paths.is_empty() {
                warn!(
                    ctx,
                    "artifact pattern `{pattern}` matches no workspace file"
                );
            }
            for path in paths {
                output = output.artifact(ctx.artifact(&path)?);
            }
        }
        Ok(output)
    }
}

/// Parses and runs `script`: its exit status and the number of simple commands run.
///
/// # Errors
///
/// `cancelled` when the step is cancelled between commands.
pub fn run_script(
    ctx: &Context,
    script: &str,
    env: &[(String, String)],
) -> Result<(i32, u64), Error> {
    let mut shell = Shell::new(ctx, env);
    let parsed = match parse::parse(script) {
        Ok(parsed) => parsed,
        Err(err) => {
            ctx.warn(&format!("exec/sh: {err}"));
            return Ok((2, 0));
        }
    };
    match shell.run(parsed) {
        Ending::Status(status) => {
            debug!(
                ctx,
                "exit status {status} after {} commands", shell.commands
            );
            Ok((status, shell.commands))
        }
        Ending::Cancelled(message) => Err(Error::cancelled(message)),
    }
}

impl TypedOutputs for Sh {
    type Outputs = Outputs;
}

labhit_sdk::export_extension!(Sh);

#[cfg(test)]
mod tests {
    use super::*;
    use labhit_sdk::testing::{MockHost, json};
    use labhit_sdk::{Command, Level};

    fn command(script: &str, cache: CacheDecision) -> Command {
        let mut command = Command::new(script);
        command.cache = cache;
        command
    }

    fn host(command: Command) -> MockHost {
        labhit_sdk::mock_host!()
            .file("src/main.rs", "fn main() {}\n")
            .command(command)
    }

    fn lines(host: &MockHost, level: Level) -> Vec<String> {
        host.logs()
            .into_iter()
            .filter(|entry| entry.level == level)
            .map(|entry| entry.message)
            .collect()
    }

    #[test]
    fn the_manifest_is_valid_and_grants_what_the_shell_needs() {
        let manifest =
            labhit_sdk::protocol::manifest::Manifest::from_toml(include_str!("../extension.toml"))
                .unwrap();
        assert!(manifest.capabilities.executor);
        assert_eq!(manifest.qualified_name(), "exec/sh");
        MockHost::from_manifest(include_str!("../extension.toml")).unwrap();
    }

    #[test]
    fn a_stage_without_run_is_invalid_config() {
        let err = labhit_sdk::mock_host!().run::<Sh>(json!({})).unwrap_err();
        assert_eq!(err.kind(), "invalid-config");
        assert!(
            err.message().contains("give the stage a `run` script"),
            "{err}"
        );
        let err = host(Command::new("true"))
            .run::<Sh>(json!({"artefacts": []}))
            .unwrap_err();
        assert!(err.message().contains("unknown field `artefacts`"), "{err}");
    }

    #[test]
    fn a_hit_skips_the_script_and_touches_nothing() {
        let host = host(command(
            "echo ran > ran.txt\nrm src/main.rs",
            CacheDecision::Hit("labhit-cache/build:1".into()),
        ));
        let out = host.run::<Sh>(json!({"artifacts": ["src/*.rs"]})).unwrap();
        assert!(out.is_success());
        assert_eq!(out.snapshot(), None);
        assert_eq!(out.get("commands"), Some("0"));
        assert_eq!(out.get("exit-code"), Some("0"));
        assert!(!host.path("ran.txt").exists());
        assert!(host.path("src/main.rs").exists());
        assert!(host.logged(
            "cache hit `labhit-cache/build:1`: the host restored the workspace; script skipped"
        ));
        // The restored files are there, so artifacts are still reported.
        assert_eq!(out.artifacts()[0].path(), "src/main.rs");
    }

    #[test]
    fn a_successful_miss_build_as_commits_the_tag() {
        let host = host(command(
            "mkdir -p dist\necho app > dist/app.txt",
            CacheDecision::MissBuildAs("labhit-cache/build:2".into()),
        ));
        let out = host.run::<Sh>(json!({"artifacts": ["dist/*"]})).unwrap();
        assert_eq!(out.snapshot(), Some("labhit-cache/build:2"));
        assert_eq!(out.get("commands"), Some("2"));
        assert_eq!(host.read("dist/app.txt"), "app\n");
        let artifact = &out.artifacts()[0];
        assert_eq!((artifact.path(), artifact.size()), ("dist/app.txt", 4));
    }

    #[test]
    fn a_failing_script_commits_nothing_and_reports_its_status() {
        let host = host(command(
            "echo partial > out.txt\nexit 3",
            CacheDecision::MissBuildAs("labhit-cache/build:3".into()),
        ));
        let out = host.run::<Sh>(json!({"artifacts": ["out.txt"]})).unwrap();
        assert_eq!(out.exit_status(), 3);
        assert_eq!(out.snapshot(), None);
        assert_eq!(out.get("exit-code"), Some("3"));
        assert!(out.artifacts().is_empty());
    }

    #[test]
    fn miss_no_commit_runs_and_never_commits() {
        let host = host(command("echo hi", CacheDecision::MissNoCommit));
        let out = host.run::<Sh>(json!({})).unwrap();
        assert!(out.is_success());
        assert_eq!(out.snapshot(), None);
        assert_eq!(lines(&host, Level::Info), vec!["hi"]);
    }

    #[test]
    fn cancellation_stops_between_commands() {
        let host = host(Command::new(
            "echo one > one.txt\necho two > two.txt\necho three",
        ))
        .cancel_after(1);
        let err = host.run::<Sh>(json!({})).unwrap_err();
        assert_eq!(err.kind(), "cancelled");
        assert_eq!(err.message(), "cancelled before the command on line 2");
        assert!(host.path("one.txt").exists());
        assert!(!host.path("two.txt").exists());
    }

    #[test]
    fn artifact_patterns_that_match_nothing_warn() {
        let host = host(Command::new("echo x > a.txt"));
        let out = host
            .run::<Sh>(json!({"artifacts": ["*.txt", "*.tar.gz"]}))
            .unwrap();
        assert_eq!(out.artifacts().len(), 1);
        assert!(host.logged("artifact pattern `*.tar.gz` matches no workspace file"));
        let err = host.run::<Sh>(json!({"artifacts": ["../x"]})).unwrap_err();
        assert_eq!(err.kind(), "invalid-config");
        assert!(
            err.message()
                .starts_with("`artifacts`: invalid glob `../x`"),
            "{err}"
        );
    }

    #[test]
    fn sandbox_settings_are_reported_as_unused() {
        let mut command = Command::new("true");
        command.image = Some("rust:1.95".into());
        command.memory_bytes = Some(1 << 30);
        command.cpu_millicores = Some(1000);
        command.parent_snapshot = Some("labhit-cache/up:1".into());
        let host = host(command);
        host.run::<Sh>(json!({})).unwrap();
        let warnings = lines(&host, Level::Warn);
        assert!(
            warnings[0].contains("`sandbox.image` (rust:1.95) is not used"),
            "{warnings:?}"
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            lines(&host, Level::Debug)
                .iter()
                .any(|line| line.contains("upstream snapshot `labhit-cache/up:1`"))
        );
    }

    #[test]
    fn paths_outside_the_workspace_are_refused_and_untouched() {
        let outside =
            std::env::temp_dir().join(format!("labhit-sh-outside-{}", std::process::id()));
        let _ = std::fs::remove_file(&outside);
        let target = outside.display().to_string();
        let script = format!(
            "set +e\necho leak > {target}\ncat {target}\nrm -f {target}\ncp src/main.rs {target}\nexit 0"
        );
        let host = host(Command::new(script));
        let out = host.run::<Sh>(json!({})).unwrap();
        assert!(out.is_success());
        assert!(!outside.exists());
        let errors = lines(&host, Level::Warn);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors.iter().all(|e| e.contains("outside the workspace")),
            "{errors:?}"
        );
    }

    #[test]
    fn parse_errors_run_nothing_and_exit_2() {
        let host = host(Command::new("touch made.txt\necho $(date)"));
        let out = host.run::<Sh>(json!({})).unwrap();
        assert_eq!(out.exit_status(), 2);
        assert_eq!(out.get("commands"), Some("0"));
        assert!(!host.path("made.txt").exists());
        assert_eq!(
            lines(&host, Level::Warn),
            vec![
                "exec/sh: line 2:6: command substitution `$(…)` is not supported by this sandboxed shell"
            ]
        );
    }

    #[test]
    fn hostile_inputs_end_with_clear_errors() {
        // A pipeline buffer larger than the bound.
        let host = host(Command::new(
            "printf '%s' x > a\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22; do cat a a > b; mv b a; done\ncat a a a a a | wc -c",
        ));
        let out = host.run::<Sh>(json!({})).unwrap();
        assert_eq!(out.exit_status(), 2);
        assert!(host.logged("the output of a pipeline stage exceeds 16 MiB"));
        // Deep nesting and huge scripts are refused by the parser.
        let deep = "if true; then ".repeat(100);
        let host = host_with(&deep);
        assert_eq!(host.run::<Sh>(json!({})).unwrap().exit_status(), 2);
        let big = "echo x\n".repeat(200_000);
        let host = host_with(&big);
        assert_eq!(host.run::<Sh>(json!({})).unwrap().exit_status(), 2);
    }

    #[test]
    fn runs_the_bundle_stage_of_the_example_pipeline() {
        let script = "mkdir -p release\ncp dist/app.txt dist/SHA256SUMS release/\nprintf 'pipeline %s\\n' \"$LABHIT_PIPELINE\" > release/NOTES\nfor file in release/*; do\n  echo \"bundled $file\"\ndone\n";
        let host = labhit_sdk::mock_host!()
            .file("dist/app.txt", "hello from labhit\n")
            .file("dist/SHA256SUMS", "abc  dist/app.txt\n")
            .env("LABHIT_PIPELINE", "labhit-example")
            .command(command(
                script,
                CacheDecision::MissBuildAs("labhit-cache/bundle:1".into()),
            ));
        let out = host
            .run::<Sh>(json!({"artifacts": ["release/**"]}))
            .unwrap();
        assert!(out.is_success());
        assert_eq!(out.snapshot(), Some("labhit-cache/bundle:1"));
        assert_eq!(host.read("release/NOTES"), "pipeline labhit-example\n");
        let paths: Vec<&str> = out.artifacts().iter().map(|a| a.path()).collect();
        assert_eq!(
            paths,
            vec!["release/NOTES", "release/SHA256SUMS", "release/app.txt"]
        );
        assert_eq!(
            lines(&host, Level::Info),
            vec![
                "bundled release/NOTES",
                "bundled release/SHA256SUMS",
                "bundled release/app.txt"
            ]
        );
    }

    #[test]
    fn random_scripts_never_panic() {
        const TOKENS: &[&str] = &[
            "echo", "a", "'", "\"", "$", "{", "}", ")", "|", ";", "\n", "<<", "EOF", ">", "<",
            "2>&1", "if", "then", "elif", "else", "fi", "for", "x", "in", "do", "done", "*", "[",
            "]", "\\", "$?", "${X:-", "#", " ", "cat", "printf", "%s%d\\n", "test", "!", "&&",
            "||", "=", "X=", "mkdir", "-p", "rm", "-rf", "cd", "..", "/", "grep", "sort", "head",
            "-n", "wc", "-l", "set", "-u", "+e", "exit", "ls", "cp", "mv", "f", "d/", "<<-", "\t",
            "export", "unset", "tee", "-", "0", "x.txt",
        ];
        // Refused constructs end parsing early; mix them in rarely so most scripts run.
        const REFUSED: &[&str] = &["`", "$(", "(", "&", "~", "case", "while"];
        let host = labhit_sdk::mock_host!();
        let ctx = host.context();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut ran = 0;
        for _ in 0..3000 {
            let len = usize::try_from(next() % 24).unwrap();
            let mut script = String::new();
            for _ in 0..len {
                let index = usize::try_from(next() % TOKENS.len() as u64).unwrap();
                script.push_str(TOKENS[index]);
                if next() % 3 == 0 {
                    script.push(' ');
                }
            }
            if next() % 10 == 0 {
                let index = usize::try_from(next() % REFUSED.len() as u64).unwrap();
                script.push_str(REFUSED[index]);
            }
            match run_script(&ctx, &script, &[]) {
                Ok((_, commands)) => ran += u64::from(commands > 0),
                Err(err) => panic!("{script:?}: {err}"),
            }
        }
        assert!(ran > 500, "only {ran} scripts ran a command");
    }

    fn host_with(script: &str) -> MockHost {
        host(Command::new(script))
    }
}
