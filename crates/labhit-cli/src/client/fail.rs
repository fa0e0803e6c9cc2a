//! A gRPC status from the server as a message and an exit code.
//!
//! What the request asked for is the problem (`INVALID_ARGUMENT`, `NOT_FOUND`,
//! `FAILED_PRECONDITION`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `OUT_OF_RANGE`): exit 1,
//! like a pipeline with problems. Anything else (unreachable, `UNAUTHENTICATED`, `INTERNAL`,
//! …) stops the command: exit 3.

use std::io::Write as _;

use tonic::Code;

use crate::Exit;
use crate::printable::printable;

/// Whether the status blames the request (exit 1) rather than the connection or server.
fn is_request_problem(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::OutOfRange
    )
}

/// The status as one line: `what: code name: message` (plus a hint for a missing token).
pub(crate) fn describe(what: &str, status: &tonic::Status) -> String {
    let mut text = format!("{what}: {}: {}", code_name(status.code()), status.message());
    if status.code() == Code::Unauthenticated {
        text.push_str(&format!(
            " (give the token with --token-file FILE or the environment variable {})",
            super::connect::TOKEN_VAR
        ));
    }
    text
}

/// Prints the status to stderr and returns its exit code.
pub(crate) fn report(what: &str, status: &tonic::Status, color: anstream::ColorChoice) -> Exit {
    let mut stderr = crate::stdio::stderr(color);
    let style = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Red.into()));
    let _ = writeln!(
        stderr,
        "labhit: {style}error{style:#}: {}",
        printable(&describe(what, status))
    );
    if is_request_problem(status.code()) {
        Exit::Problems
    } else {
        Exit::Fatal
    }
}

/// The canonical lower-case name of a status code (`not found`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_problems_exit_1_and_the_rest_3() {
        assert!(is_request_problem(Code::NotFound));
        assert!(is_request_problem(Code::PermissionDenied));
        assert!(!is_request_problem(Code::Unauthenticated));
        assert!(!is_request_problem(Code::Unavailable));
        assert!(!is_request_problem(Code::Internal));
    }

    #[test]
    fn unauthenticated_says_where_the_token_comes_from() {
        let text = describe("trigger", &tonic::Status::unauthenticated("missing token"));
        assert!(text.contains("LABHIT_TOKEN"), "{text}");
        assert!(
            text.starts_with("trigger: unauthenticated: missing token"),
            "{text}"
        );
    }
}
