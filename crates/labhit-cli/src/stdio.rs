//! Standard output and standard error for every printer of the CLI: writes that cannot fail.
//!
//! The exit status of `labhit` is the verdict of the command (problems found, a stage failed,
//! the step's own code), never whether its report could be written: `labhit run … | true`
//! closes stdout before the summary is printed, and a failed run must still exit 1. So every
//! handle a subcommand prints to is a [`Lenient`] writer: the first failed write (a closed
//! pipe, a full disk) is remembered, later output is dropped, and the caller always sees
//! success. (Rust ignores `SIGPIPE`, so a closed pipe is an `EPIPE` error here, not a signal.)

use std::io::{self, Write};

use anstream::AutoStream;

/// A writer whose writes always succeed; see the module docs.
#[derive(Debug)]
pub(crate) struct Lenient<W> {
    inner: W,
    gone: bool,
}

impl<W> Lenient<W> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, gone: false }
    }

    /// The wrapped writer.
    pub(crate) fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for Lenient<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.gone && self.inner.write_all(buf).is_err() {
            self.gone = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.gone && self.inner.flush().is_err() {
            self.gone = true;
        }
        Ok(())
    }
}

/// Standard output, locked, colored per `choice`, never failing.
pub(crate) fn stdout(
    choice: anstream::ColorChoice,
) -> Lenient<AutoStream<io::StdoutLock<'static>>> {
    Lenient::new(AutoStream::new(io::stdout().lock(), choice))
}

/// Standard error, locked, colored per `choice`, never failing.
pub(crate) fn stderr(
    choice: anstream::ColorChoice,
) -> Lenient<AutoStream<io::StderrLock<'static>>> {
    Lenient::new(AutoStream::new(io::stderr().lock(), choice))
}

/// Standard output for bytes that must pass as they are (JSON, schemas, graphs), never
/// failing.
pub(crate) fn raw_stdout() -> Lenient<io::StdoutLock<'static>> {
    Lenient::new(io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_stream_is_not_an_error() {
        let mut out = Lenient::new(Closed);
        assert!(writeln!(out, "lost").is_ok());
        assert!(out.flush().is_ok());
        assert!(out.gone);
    }
}
