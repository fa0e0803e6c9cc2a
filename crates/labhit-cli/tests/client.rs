//! The client commands (`trigger`, `status`, `runs`, `logs`, `cancel`, `approve`) without a
//! server, or with a server address nothing listens on: connection, token and usage errors
//! are clear and exit 3 (or 2 for usage), never a hang or a panic. The commands against the
//! real `labhit serve` are tested in `serve.rs`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `labhit` with `args` (no `LABHIT_TOKEN` unless given in `env`).
fn labhit(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_labhit"));
    command
        .args(args)
        .env_remove("LABHIT_TOKEN")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running labhit")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A loopback URL whose port nothing listens on (it was bound and released).
fn dead_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

const RUN: &str = "0191b3c4-5d6e-7f80-91a2-b3c4d5e6f708";

/// Every client command, with its positional arguments.
fn commands() -> Vec<Vec<&'static str>> {
    vec![
        vec!["trigger", "app", "main"],
        vec!["status", RUN],
        vec!["runs"],
        vec!["logs", RUN],
        vec!["logs", RUN, "-f"],
        vec!["cancel", RUN],
        vec!["approve", RUN, "deploy"],
    ]
}

#[test]
fn an_unreachable_server_is_fatal_and_named() {
    let server = dead_server();
    for command in commands() {
        let mut args = command.clone();
        args.extend(["--server", server.as_str()]);
        let output = labhit(&args, &[]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains(&format!("cannot connect to the server at {server}"))
                && err.contains("labhit serve"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_server_urls_are_fatal_and_named() {
    for url in [
        "127.0.0.1:7777",
        "https://127.0.0.1:7777",
        "http://bad host",
    ] {
        let output = labhit(&["status", RUN, "--server", url], &[]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{url}: {err}");
        assert!(err.contains("invalid --server"), "{url}: {err}");
    }
}

fn token_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn bad_tokens_are_refused_before_connecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = dead_server();
    let cases = [
        (token_file(dir.path(), "empty", "\n\n"), "is empty"),
        (
            token_file(dir.path(), "server-format", "alice s3cret\n"),
            "contains whitespace",
        ),
        (
            token_file(dir.path(), "two", "a\nb\n"),
            "more than one line",
        ),
        (
            dir.path().join("missing").display().to_string(),
            "cannot read the token file",
        ),
        (
            dir.path().display().to_string(),
            "cannot read the token file",
        ),
    ];
    for (file, needle) in cases {
        let output = labhit(
            &["status", RUN, "--server", &server, "--token-file", &file],
            &[],
        );
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{file}: {err}");
        assert!(err.contains(needle), "{file}: {err}");
        assert!(
            !err.contains("cannot connect"),
            "checked before connecting: {err}"
        );
    }
    let output = labhit(
        &["status", RUN, "--server", &server],
        &[("LABHIT_TOKEN", "two words")],
    );
    let err = stderr(&output);
    assert!(err.contains("invalid token in LABHIT_TOKEN"), "{err}");
    // A good token file gets as far as connecting.
    let good = token_file(dir.path(), "good", "  t0ken-value \n");
    let output = labhit(
        &["status", RUN, "--server", &server, "--token-file", &good],
        &[],
    );
    assert!(
        stderr(&output).contains("cannot connect"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["trigger", "app"],
        vec!["approve", RUN],
        vec!["runs", "--status", "sideways"],
        vec!["runs", "--limit", "0"],
        vec!["logs", RUN, "--cursor", "-1"],
        vec!["status", RUN, "--format", "yaml"],
    ] {
        let output = labhit(&args, &[]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn every_client_command_documents_examples_connection_and_exit_codes() {
    for command in ["trigger", "status", "runs", "logs", "cancel", "approve"] {
        let output = labhit(&[command, "--help"], &[]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{command}");
        for needle in [
            "Examples:",
            "Exit codes",
            "http://127.0.0.1:7777",
            "LABHIT_TOKEN",
            "authorization: Bearer",
            "--format",
        ] {
            assert!(
                text.contains(needle),
                "{command} --help lacks {needle:?}:\n{text}"
            );
        }
    }
}
