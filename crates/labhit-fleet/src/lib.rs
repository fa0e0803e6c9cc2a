//! Scale-out for LabHit: the stages of a run dispatched to a fleet of `labhit worker`s
//! through NATS JetStream.
//!
//! The server side is [`NatsDispatcher`], a `labhit_runtime::dispatch::Dispatcher`: for each
//! ready stage it packs the run's workspace into the JetStream object store under its
//! content-addressed `ArchiveId` (identical workspaces are stored once), publishes one
//! [`wire::Task`] to the work-queue stream on the subject of what the stage needs (the local
//! executor, or an extension `name@version` of a contract), forwards the worker's log lines to
//! the run's log (the server owns the logs; a line already seen is dropped) and applies the
//! worker's resulting workspace. The server decides caching (a `hit` when the snapshot
//! object of the key exists); the worker obeys: it restores a `hit` from the object store
//! and stores what a `miss_build_as` commits there ([`snapshots`]), so any worker can restore
//! any snapshot.
//!
//! The worker side is [`worker::Worker::start`]: one durable pull consumer per need it can serve, in
//! progress acknowledgements while a stage runs, the same `labhit-runtime` sandbox and limits
//! as a local run, the stage's deadline and the run's cancellation honoured on the worker.
//!
//! | module | job |
//! |---|---|
//! | [`wire`] | the messages and subjects |
//! | [`archive`] | a workspace as one deterministic tar, its content-addressed id |
//! | [`setup`] | connecting, the streams and buckets both sides use |
//! | [`snapshots`] | snapshots in the object store, by cache tag |
//! | `events` | the server's one subscription to the task events, routed to the dispatches |
//! | `objects` | reading an object without a consumer on the server |
//! | `recent` | bounded in-memory memories that spare a round trip per stage |
//! | [`dispatcher`] | [`NatsDispatcher`] |
//! | [`recovery`] | a restarted server cancels the fleet's tasks of runs it found interrupted |
//! | [`worker`] | `labhit worker` |
//! | [`testing`] | real `nats-server` processes for tests and benchmarks: one node or a three-node JetStream cluster |

pub mod archive;
pub mod dispatcher;
mod events;
mod objects;
mod recent;
pub mod recovery;
pub mod setup;
pub mod snapshots;
pub mod testing;
pub mod wire;
pub mod worker;

pub use dispatcher::NatsDispatcher;
pub use setup::{Fleet, FleetError, FleetOptions};
