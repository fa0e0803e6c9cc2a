//! Connecting to NATS and the JetStream streams and buckets server and workers share
//! (created by whoever comes first, with the same settings).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, object_store, stream};
use labhit_protocol::ids::ArchiveId;

use crate::events::Router;
use crate::recent::Recently;
use crate::wire::{
    ARCHIVES_BUCKET, EVENTS_STREAM, Need, SNAPSHOTS_BUCKET, TASKS_STREAM, WORKERS_BUCKET,
};
use crate::{archive, objects};

/// How long a first JetStream request may be retried while a fresh cluster elects its leader.
const JETSTREAM_READY: Duration = Duration::from_secs(30);

/// A failure talking to NATS or handling what came over it.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A NATS operation failed.
    #[error("nats: {what}: {source}")]
    Nats {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A workspace archive could not be made or used.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// The archive a task names is not in the object store.
    #[error(
        "workspace archive `{id}` is missing from the object store bucket `{bucket}` (was it \
         deleted, or is the worker connected to another NATS system?)",
        bucket = ARCHIVES_BUCKET
    )]
    MissingArchive {
        /// The archive.
        id: ArchiveId,
    },
    /// The archive's bytes do not hash to its name.
    #[error(
        "workspace archive `{id}` in bucket `{bucket}` is corrupt: its content hashes to \
         `{actual}`",
        bucket = ARCHIVES_BUCKET
    )]
    CorruptArchive {
        /// The archive's name.
        id: ArchiveId,
        /// The id its content has.
        actual: ArchiveId,
    },
    /// A message that is not what the fleet sends.
    #[error("malformed message on `{subject}`: {source}")]
    Malformed {
        /// Its subject.
        subject: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A local I/O failure (the worker's directories).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Maps a client error to [`FleetError::Nats`].
pub(crate) fn nats<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> FleetError {
    let what = what.into();
    move |e| FleetError::Nats {
        what,
        source: Box::new(e),
    }
}

/// How long a need some worker advertised is taken as still advertised without asking the
/// workers bucket again (workers refresh their adverts every 10 s; a worker gone since then
/// leaves the task queued for the next one, as a worker dying after the check would).
const ADVERT_FRESH: Duration = Duration::from_secs(5);

/// How long an archive stored (or found stored) is taken as stored without a look-up. The
/// fleet never deletes archives; one deleted by hand in that moment is reported missing by
/// the worker, as it would be had it been deleted just after the look-up.
const STORED_FRESH: Duration = Duration::from_secs(5);

/// How long an object-store operation (or a publish) is retried while NATS cannot serve it.
pub const STORE_RETRY: Duration = Duration::from_secs(30);

/// Runs `op` again while it fails with a NATS or read error (a lost node, a leader election,
/// a timeout), every [`STORE_BACKOFF`], for up to [`STORE_RETRY`]; any other result at once.
pub(crate) async fn retry<T, F, Fut>(mut op: F) -> Result<T, FleetError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, FleetError>>,
{
    let started = Instant::now();
    loop {
        match op().await {
            Err(FleetError::Nats { .. } | FleetError::Io { .. })
                if started.elapsed() < STORE_RETRY =>
            {
                tokio::time::sleep(STORE_BACKOFF).await;
            }
            other => return other,
        }
    }
}

/// Publishes `payload` on `subject` to JetStream and waits for the stream's
/// acknowledgement, again (see [`retry`]) while NATS fails: a message the fleet relies on
/// (a log line, a reply) is not dropped because a node went away. Receivers de-duplicate.
pub(crate) async fn publish_acked(
    js: &jetstream::Context,
    subject: String,
    payload: bytes::Bytes,
) -> Result<(), FleetError> {
    retry(|| async {
        let what = || format!("publishing to `{subject}`");
        let ack = js
            .publish(subject.clone(), payload.clone())
            .await
            .map_err(nats(what()))?;
        ack.await.map_err(nats(what()))?;
        Ok(())
    })
    .await
}

/// The pause between two tries of an object-store operation.
pub(crate) const STORE_BACKOFF: Duration = Duration::from_millis(200);

/// Settings both sides must agree on.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Replicas of every stream and bucket (3 on a three-node cluster).
    pub replicas: usize,
    /// How long a worker may stay silent on a task before it is redelivered to another.
    pub ack_wait: Duration,
    /// How often a task is delivered before it is given up.
    pub max_deliver: i64,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
        }
    }
}

/// A connection with the fleet's streams and buckets.
#[derive(Clone)]
pub struct Fleet {
    /// The core client.
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// The tasks stream.
    pub tasks: stream::Stream,
    /// The events stream.
    pub events: stream::Stream,
    /// The workspace archives.
    pub archives: object_store::ObjectStore,
    /// The snapshots, by cache tag ([`crate::snapshots`]).
    pub snapshots: object_store::ObjectStore,
    /// The workers' advertisements.
    pub workers: kv::Store,
    /// The settings.
    pub options: FleetOptions,
    /// Needs some worker of this protocol advertised a moment ago: the dispatcher asks the
    /// workers bucket again only when that is older than a few seconds.
    pub(crate) advertised: Recently<Need>,
    /// Archives stored a moment ago: not looked up again before storing.
    pub(crate) stored_archives: Recently<ArchiveId>,
    /// The one subscription to the task events, shared by every dispatch of this connection.
    pub(crate) router: Router,
    /// The streams under [`Fleet::archives`] and [`Fleet::snapshots`], which objects are
    /// read from ([`crate::objects`]).
    pub(crate) archive_chunks: stream::Stream,
    pub(crate) snapshot_chunks: stream::Stream,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Connects to `urls` (comma-separated) and makes sure the streams and buckets exist. A
    /// fresh cluster's first JetStream requests are retried until it has a leader.
    pub async fn connect(urls: &str, options: FleetOptions) -> Result<Self, FleetError> {
        let mut addrs = Vec::new();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let addr: async_nats::ServerAddr =
                url.parse().map_err(nats(format!("the NATS URL `{url}`")))?;
            addrs.push(addr);
        }
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(addrs.as_slice())
            .await
            .map_err(nats(format!("connecting to `{urls}`")))?;
        let js = jetstream::new(client.clone());
        let start = Instant::now();
        loop {
            match Self::open(&client, &js, &options).await {
                Ok(fleet) => return Ok(fleet),
                Err(e) if start.elapsed() >= JETSTREAM_READY => return Err(e),
                // JetStream not ready yet (no leader): each attempt waits on the server.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn open(
        client: &async_nats::Client,
        js: &jetstream::Context,
        options: &FleetOptions,
    ) -> Result<Self, FleetError> {
        let tasks = js
            .get_or_create_stream(stream::Config {
                name: TASKS_STREAM.to_owned(),
                subjects: vec!["labhit.task.>".to_owned()],
                retention: stream::RetentionPolicy::WorkQueue,
                num_replicas: options.replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(nats(format!("the stream `{TASKS_STREAM}`")))?;
        let events = js
            .get_or_create_stream(stream::Config {
                name: EVENTS_STREAM.to_owned(),
                subjects: vec![
                    "labhit.log.>".to_owned(),
                    "labhit.done.>".to_owned(),
                    "labhit.cancel.>".to_owned(),
                ],
                max_age: Duration::from_secs(24 * 3600),
                num_replicas: options.replicas,
                ..Default::default()
            })
            .await
            .map_err(nats(format!("the stream `{EVENTS_STREAM}`")))?;
        let archives = match js.get_object_store(ARCHIVES_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: ARCHIVES_BUCKET.to_owned(),
                    num_replicas: options.replicas,
                    ..Default::default()
                })
                .await
                .map_err(nats(format!("the object store `{ARCHIVES_BUCKET}`")))?,
        };
        let snapshots = match js.get_object_store(SNAPSHOTS_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: SNAPSHOTS_BUCKET.to_owned(),
                    num_replicas: options.replicas,
                    ..Default::default()
                })
                .await
                .map_err(nats(format!("the object store `{SNAPSHOTS_BUCKET}`")))?,
        };
        let workers = match js.get_key_value(WORKERS_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: WORKERS_BUCKET.to_owned(),
                    history: 1,
                    max_age: Duration::from_secs(30),
                    num_replicas: options.replicas,
                    ..Default::default()
                })
                .await
                .map_err(nats(format!("the key-value bucket `{WORKERS_BUCKET}`")))?,
        };
        let archive_chunks = js
            .get_stream(format!("OBJ_{ARCHIVES_BUCKET}"))
            .await
            .map_err(nats(format!("the stream of `{ARCHIVES_BUCKET}`")))?;
        let snapshot_chunks = js
            .get_stream(format!("OBJ_{SNAPSHOTS_BUCKET}"))
            .await
            .map_err(nats(format!("the stream of `{SNAPSHOTS_BUCKET}`")))?;
        Ok(Self {
            client: client.clone(),
            js: js.clone(),
            tasks,
            events,
            archives,
            snapshots,
            workers,
            options: options.clone(),
            advertised: Recently::new(ADVERT_FRESH, 1024),
            stored_archives: Recently::new(STORED_FRESH, 1024),
            router: Router::default(),
            archive_chunks,
            snapshot_chunks,
        })
    }

    /// Stores `bytes` under its content-addressed id unless an archive of that id exists.
    ///
    /// A NATS failure (a lost node, a leader election) is retried for up to
    /// [`STORE_RETRY`].
    pub async fn put_archive(&self, bytes: &[u8]) -> Result<ArchiveId, FleetError> {
        retry(|| self.try_put_archive(bytes)).await
    }

    async fn try_put_archive(&self, bytes: &[u8]) -> Result<ArchiveId, FleetError> {
        let id = archive::archive_id(bytes);
        if self.stored_archives.contains(&id) {
            return Ok(id);
        }
        let name = id.to_string();
        // A failed look-up stores it again (the same bytes under the same name).
        if !matches!(objects::stored(&self.archives, &name).await, Ok(Some(_))) {
            let mut reader = bytes;
            self.archives
                .put(name.as_str(), &mut reader)
                .await
                .map_err(nats(format!("storing workspace archive `{id}`")))?;
        }
        self.stored_archives.saw(id);
        Ok(id)
    }

    /// The bytes of archive `id`, checked against the id.
    ///
    /// A missing or corrupt archive is an error at once; a NATS or read failure (a lost node,
    /// a leader election, a timeout) is retried for up to [`STORE_RETRY`].
    pub async fn get_archive(&self, id: ArchiveId) -> Result<Vec<u8>, FleetError> {
        retry(|| self.try_get_archive(id)).await
    }

    async fn try_get_archive(&self, id: ArchiveId) -> Result<Vec<u8>, FleetError> {
        let name = id.to_string();
        let info = objects::stored(&self.archives, &name)
            .await
            .map_err(nats(format!("looking up workspace archive `{id}`")))?
            .ok_or(FleetError::MissingArchive { id })?;
        let bytes = objects::read(&self.archive_chunks, &info).await?;
        let actual = archive::archive_id(&bytes);
        if actual != id {
            return Err(FleetError::CorruptArchive { id, actual });
        }
        Ok(bytes)
    }
}
