//! Every blocking wait of a guest is bounded by its step's deadline and by cancellation.
//!
//! The epoch callback of [`crate::sandbox`] only stops a guest while it runs wasm. A guest
//! can also wait inside the host: `std::thread::sleep` is `wasi:io/poll` on a clock pollable,
//! and every `blocking-*` call of `wasi:io/streams` waits for its stream to be ready. The
//! synchronous WASI bindings block the step's thread in such a call for as long as the
//! pollable says, so a guest asleep for an hour outlived any timeout and any Ctrl-C.
//!
//! This module shadows each of those calls in the [`Linker`] (after WASI was added to it)
//! with a version that races the same wait against
//!
//! * the step's deadline: the wait is dropped and the guest traps with
//!   [`Interruption::Deadline`], reported as a timeout;
//! * cancellation plus the grace period: once the step's [`Cancellation`] is set, a guest
//!   still waiting when the grace period ends traps with [`Interruption::Cancelled`]. A wait
//!   that ends within the grace period returns normally, so a guest that checks
//!   `is-cancelled()` after it can still end cleanly.
//!
//! A dropped wait loses nothing the guest could observe: the instance traps and is never
//! entered again (one store per step).
//!
//! [`Cancellation`]: crate::Cancellation

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi_io::bindings::wasi::io::{poll, streams};
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream, StreamResult};

use crate::sandbox::{Interruption, StepHost, grace_ends};

/// The `wasi:io` package version the shadowed functions are defined under; the linker
/// serves every `0.2.x` import from it, as it does for the functions it replaces.
const IO: &str = "0.2.12";

pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = shadow(linker);
    linker.allow_shadowing(false);
    result
}

fn shadow(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    let mut poll = linker.instance(&format!("wasi:io/poll@{IO}"))?;
    poll.func_wrap(
        "poll",
        |store, (pollables,): (Vec<Resource<DynPollable>>,)| {
            bounded(store, |table| Box::pin(poll::Host::poll(table, pollables)))
                .map(|ready| (ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |store, (pollable,): (Resource<DynPollable>,)| {
            bounded(store, |table| {
                Box::pin(poll::HostPollable::block(table, pollable))
            })
        },
    )?;

    let mut streams = linker.instance(&format!("wasi:io/streams@{IO}"))?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |store, (stream, len): (Resource<DynInputStream>, u64)| {
            bounded(store, |table| {
                Box::pin(async move {
                    let result =
                        streams::HostInputStream::blocking_read(&mut *table, stream, len).await;
                    returned(table, result)
                })
            })
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |store, (stream, len): (Resource<DynInputStream>, u64)| {
            bounded(store, |table| {
                Box::pin(async move {
                    let result =
                        streams::HostInputStream::blocking_skip(&mut *table, stream, len).await;
                    returned(table, result)
                })
            })
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |store, (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            bounded(store, |table| {
                Box::pin(async move {
                    let result = streams::HostOutputStream::blocking_write_and_flush(
                        &mut *table,
                        stream,
                        bytes,
                    )
                    .await;
                    returned(table, result)
                })
            })
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |store, (stream, len): (Resource<DynOutputStream>, u64)| {
            bounded(store, |table| {
                Box::pin(async move {
                    let result = streams::HostOutputStream::blocking_write_zeroes_and_flush(
                        &mut *table,
                        stream,
                        len,
                    )
                    .await;
                    returned(table, result)
                })
            })
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |store, (stream,): (Resource<DynOutputStream>,)| {
            bounded(store, |table| {
                Box::pin(async move {
                    let result =
                        streams::HostOutputStream::blocking_flush(&mut *table, stream).await;
                    returned(table, result)
                })
            })
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |store, (dest, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            bounded(store, |table| {
                Box::pin(async move {
                    let result =
                        streams::HostOutputStream::blocking_splice(&mut *table, dest, src, len)
                            .await;
                    returned(table, result)
                })
            })
        },
    )?;
    Ok(())
}

/// A wait on the step's resource table.
type Wait<'t, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 't>>;

/// Runs the wait `make` builds on the step's resource table, bounded by the step's deadline
/// and cancellation. A bound that fires traps the guest with the [`Interruption`].
fn bounded<T>(
    mut store: StoreContextMut<'_, StepHost>,
    make: impl for<'t> FnOnce(&'t mut ResourceTable) -> Wait<'t, T>,
) -> wasmtime::Result<T> {
    let host = store.data_mut();
    let bounds = Bounds {
        deadline: host.clock.deadline,
        grace: host.clock.grace,
        started: host.clock.started,
        cancellation: host.cancellation.clone(),
    };
    // Disjoint borrows: the wait holds the table, the verdict goes to the clock.
    let StepHost { table, clock, .. } = host;
    let wait = make(table);
    match wasmtime_wasi::runtime::in_tokio(bounds.race(wait)) {
        Ok(result) => result,
        Err(interruption) => {
            clock.interrupted = Some(interruption);
            Err(wasmtime::Error::new(interruption))
        }
    }
}

/// The result of a `wasi:io/streams` call as the guest receives it: a trap, or a
/// `stream-error` resource pushed into the table (what the generated bindings do).
fn returned<T>(
    table: &mut ResourceTable,
    result: StreamResult<T>,
) -> wasmtime::Result<(Result<T, streams::StreamError>,)> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(err) => Ok((Err(streams::Host::convert_stream_error(table, err)?),)),
    }
}

/// What bounds one wait.
struct Bounds {
    deadline: Instant,
    grace: std::time::Duration,
    started: Instant,
    cancellation: crate::Cancellation,
}

impl Bounds {
    /// Runs `wait` to completion unless the deadline passes first, or the grace period after
    /// cancellation ends first.
    async fn race<F: Future>(self, wait: F) -> Result<F::Output, Interruption> {
        let Bounds {
            deadline,
            grace,
            started,
            cancellation,
        } = self;
        let cancelled_and_grace_over = async move {
            cancellation.cancelled().await;
            let end = cancellation
                .cancelled_at()
                .and_then(|at| grace_ends(at, started, grace));
            match end {
                Some(end) => tokio::time::sleep_until(end.into()).await,
                // A grace period too long for `Instant`: never ends.
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            output = wait => Ok(output),
            () = tokio::time::sleep_until(deadline.into()) => Err(Interruption::Deadline),
            () = cancelled_and_grace_over => Err(Interruption::Cancelled),
        }
    }
}
