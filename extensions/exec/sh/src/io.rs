//! Where command input comes from and output goes: the step log (stdout lines at info,
//! stderr lines at warn), in-memory pipeline buffers, here-documents, workspace files and
//! `/dev/null`.
//!
//! Builtins run in-process, so a pipeline `a | b` runs `a` to completion with its stdout in a
//! buffer, then `b` with that buffer as stdin. Buffers are bounded by [`MAX_BUFFER_BYTES`].

use std::fs::File;
use std::io::Write;

use labhit_sdk::Context;

use crate::expand::MAX_VALUE_BYTES;
use crate::fs::describe;

/// Largest pipeline buffer or input read into memory, in bytes.
pub const MAX_BUFFER_BYTES: usize = MAX_VALUE_BYTES;

/// A log line longer than this is emitted in pieces.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// Why a script stops before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `exit`, or errexit after a failing command: the script's status.
    Exit(i32),
    /// An error that ends the script with status 2, with its message.
    Fatal(String),
    /// The step was cancelled; how far the script got.
    Cancelled(String),
}

/// An output destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The step log at info level (the script's stdout).
    Stdout,
    /// The step log at warn level (the script's stderr).
    Stderr,
    /// A buffer or file slot.
    Slot(usize),
    /// `/dev/null`.
    Null,
}

/// The standard descriptors of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fds {
    /// Standard input: an input slot, or nothing (empty).
    pub stdin: Option<usize>,
    /// Standard output.
    pub out: Dest,
    /// Standard error.
    pub err: Dest,
}

impl Fds {
    /// The descriptors of the script itself: no input, output to the log.
    pub fn script() -> Self {
        Self {
            stdin: None,
            out: Dest::Stdout,
            err: Dest::Stderr,
        }
    }
}

enum Slot {
    Buffer(Vec<u8>),
    File { file: File, name: String },
    Input { data: Vec<u8>, pos: usize },
}

/// Output routing and the slots behind [`Dest::Slot`] and [`Fds::stdin`].
pub struct Io<'c> {
    ctx: &'c Context,
    out_line: Vec<u8>,
    err_line: Vec<u8>,
    slots: Vec<Slot>,
}

impl<'c> Io<'c> {
    /// Routing to the log of `ctx`.
    pub fn new(ctx: &'c Context) -> Self {
        Self {
            ctx,
            out_line: Vec::new(),
            err_line: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// The number of slots, to [`release`](Self::release) the ones opened after it.
    pub fn mark(&self) -> usize {
        self.slots.len()
    }

    /// Closes the slots opened since `mark`.
    pub fn release(&mut self, mark: usize) {
        self.slots.truncate(mark);
    }

    /// A new empty buffer.
    pub fn buffer(&mut self) -> usize {
        self.slots.push(Slot::Buffer(Vec::new()));
        self.slots.len() - 1
    }

    /// A new input with `data`.
    pub fn input(&mut self, data: Vec<u8>) -> usize {
        self.slots.push(Slot::Input { data, pos: 0 });
        self.slots.len() - 1
    }

    /// A new file output; `name` is how errors mention it.
    pub fn file(&mut self, file: File, name: String) -> usize {
        self.slots.push(Slot::File { file, name });
        self.slots.len() - 1
    }

    /// Turns the buffer `slot` into an input read from its start.
    pub fn buffer_to_input(&mut self, slot: usize) {
        if let Some(entry) = self.slots.get_mut(slot)
            && let Slot::Buffer(data) = entry
        {
            let data = std::mem::take(data);
            *entry = Slot::Input { data, pos: 0 };
        }
    }

    /// Frees the memory of the input `slot`.
    pub fn clear(&mut self, slot: usize) {
        if let Some(Slot::Input { data, pos }) = self.slots.get_mut(slot) {
            *data = Vec::new();
            *pos = 0;
        }
    }

    /// Everything left on the input of `fds` (consumed).
    pub fn read_all(&mut self, fds: Fds) -> Vec<u8> {
        match fds.stdin.and_then(|slot| self.slots.get_mut(slot)) {
            Some(Slot::Input { data, pos }) => {
                let rest = if *pos == 0 {
                    std::mem::take(data)
                } else {
                    data.get(*pos..).map(<[u8]>::to_vec).unwrap_or_default()
                };
                *data = Vec::new();
                *pos = 0;
                rest
            }
            _ => Vec::new(),
        }
    }

    /// Writes `bytes` to `dest`.
    ///
    /// # Errors
    ///
    /// [`Stop::Fatal`] when a buffer would exceed [`MAX_BUFFER_BYTES`] or a file write fails.
    pub fn write(&mut self, dest: Dest, bytes: &[u8]) -> Result<(), Stop> {
        match dest {
            Dest::Null => Ok(()),
            Dest::Stdout => {
                self.out_line.extend_from_slice(bytes);
                Self::emit_lines(self.ctx, &mut self.out_line, false, false);
                Ok(())
            }
            Dest::Stderr => {
                self.err_line.extend_from_slice(bytes);
                Self::emit_lines(self.ctx, &mut self.err_line, true, false);
                Ok(())
            }
            Dest::Slot(slot) => match self.slots.get_mut(slot) {
                Some(Slot::Buffer(data)) => {
                    if data.len() + bytes.len() > MAX_BUFFER_BYTES {
                        return Err(Stop::Fatal(format!(
                            "the output of a pipeline stage exceeds {} MiB",
                            MAX_BUFFER_BYTES >> 20
                        )));
                    }
                    data.extend_from_slice(bytes);
                    Ok(())
                }
                Some(Slot::File { file, name }) => file.write_all(bytes).map_err(|err| {
                    Stop::Fatal(format!("write error on {name}: {}", describe(&err)))
                }),
                Some(Slot::Input { .. }) | None => Ok(()),
            },
        }
    }

    /// Emits the complete lines of `pending` (all of it with `flush`).
    fn emit_lines(ctx: &Context, pending: &mut Vec<u8>, stderr: bool, flush: bool) {
        let emit = |line: &[u8]| {
            let text = String::from_utf8_lossy(line);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            if stderr {
                ctx.warn(text);
            } else {
                ctx.info(text);
            }
        };
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            emit(&pending[start..start + end]);
            start += end + 1;
        }
        while pending.len() - start > MAX_LINE_BYTES {
            // Cut at a character boundary where possible.
            let mut cut = start + MAX_LINE_BYTES;
            while cut > start && (pending[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            if cut == start {
                cut = start + MAX_LINE_BYTES;
            }
            emit(&pending[start..cut]);
            start = cut;
        }
        if flush && start < pending.len() {
            emit(&pending[start..]);
            start = pending.len();
        }
        pending.drain(..start);
    }

    /// Emits the last, unterminated lines of stdout and stderr.
    pub fn flush(&mut self) {
        Self::emit_lines(self.ctx, &mut self.out_line, false, true);
        Self::emit_lines(self.ctx, &mut self.err_line, true, true);
    }
}
