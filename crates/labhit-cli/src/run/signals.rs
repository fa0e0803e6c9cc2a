//! The signals that stop `labhit run`: `SIGINT` (Ctrl-C), `SIGTERM` and `SIGHUP`.
//!
//! [`Signals::block`] blocks the three in the calling thread before `run` starts any other
//! thread, so every thread inherits the mask and none of them is interrupted; one listener
//! thread ([`Signals::listen`]) takes them with `sigwait` and hands each to the run's handler
//! with its number in the sequence. Children start with an empty mask (the standard library
//! resets it between `fork` and `exec`), so stage commands see signals normally.
//!
//! What each signal does is the handler's business (see `run.rs`): the first cancels the run,
//! the second stops it at once. `SIGKILL` cannot be caught: there the log file (written
//! entry by entry) keeps what was logged, and the local executor's keeper kills each stage's
//! process group when labhit's end closes its lifeline pipe.

use nix::sys::signal::{SigSet, Signal};

/// The signals `labhit run` handles.
const HANDLED: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The blocked set, ready to be listened to.
pub(crate) struct Signals {
    set: SigSet,
}

impl Signals {
    /// Blocks [`HANDLED`] in the calling thread (and so in every thread it starts later).
    pub(crate) fn block() -> nix::Result<Self> {
        let mut set = SigSet::empty();
        for signal in HANDLED {
            set.add(signal);
        }
        set.thread_block()?;
        Ok(Self { set })
    }

    /// Starts the listener thread: `handler(signal, n)` runs on it for the `n`th signal
    /// (from 1), one at a time.
    pub(crate) fn listen(self, mut handler: impl FnMut(Signal, u32) + Send + 'static) {
        std::thread::spawn(move || {
            let mut count = 0u32;
            loop {
                match self.set.wait() {
                    Ok(signal) => {
                        count = count.saturating_add(1);
                        handler(signal, count);
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        });
    }
}

/// The exit code of a process ended by `signal`, as shells report it: `128 + number`.
pub(crate) fn exit_code(signal: Signal) -> u8 {
    u8::try_from(128 + signal as i32).unwrap_or(u8::MAX)
}

/// How a person would call the signal in a message (`SIGTERM`, or `Ctrl-C` for `SIGINT`).
pub(crate) fn describe(signal: Signal) -> &'static str {
    match signal {
        Signal::SIGINT => "Ctrl-C",
        other => other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_number() {
        assert_eq!(exit_code(Signal::SIGINT), 130);
        assert_eq!(exit_code(Signal::SIGTERM), 143);
        assert_eq!(exit_code(Signal::SIGHUP), 129);
    }
}
