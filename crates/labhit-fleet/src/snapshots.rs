//! Snapshots in the fleet's object store: the bucket [`SNAPSHOTS_BUCKET`], one object per
//! cache tag, named by the tag itself (`labhit-cache:<sha256>`), holding the snapshot as
//! [`SnapshotStore::export`](labhit_runtime::snapshot::SnapshotStore::export) writes it.
//!
//! The tag is the content address: it is the cache key, a hash of everything the stage's
//! effect depends on, so an object is stored once ([`Fleet::put_snapshot`] does nothing when
//! the tag is stored already, as when a redelivered task commits again) and never changes.
//! The server decides `hit` when the object exists ([`Fleet::has_snapshot`]); the worker
//! that runs the step imports it into its local store, checking every byte, and restores it
//! there. A missing or corrupt object is the worker's [`Failure::Snapshot`] (a corrupt one is
//! deleted first), on which the server logs why and runs the step again as a miss, which
//! stores the snapshot anew.
//!
//! [`Failure::Snapshot`]: crate::wire::Failure::Snapshot

use labhit_protocol::ids::SnapshotRef;

use crate::objects;
use crate::setup::{Fleet, FleetError, nats, retry};
use crate::wire::SNAPSHOTS_BUCKET;

impl Fleet {
    /// Whether the snapshot `tag` is stored. NATS failures are retried for up to
    /// [`STORE_RETRY`].
    pub async fn has_snapshot(&self, tag: &SnapshotRef) -> Result<bool, FleetError> {
        retry(|| async {
            objects::stored(&self.snapshots, tag.as_ref())
                .await
                .map(|info| info.is_some())
                .map_err(nats(format!(
                    "looking up snapshot `{tag}` in `{SNAPSHOTS_BUCKET}`"
                )))
        })
        .await
    }

    /// The bytes of the snapshot `tag`; `None` when it is not stored.
    pub async fn get_snapshot(&self, tag: &SnapshotRef) -> Result<Option<Vec<u8>>, FleetError> {
        retry(|| async {
            let stored = objects::stored(&self.snapshots, tag.as_ref())
                .await
                .map_err(nats(format!(
                    "looking up snapshot `{tag}` in `{SNAPSHOTS_BUCKET}`"
                )))?;
            let Some(info) = stored else {
                return Ok(None);
            };
            // The worker's import checks every byte (a short read is corrupt).
            objects::read(&self.snapshot_chunks, &info).await.map(Some)
        })
        .await
    }

    /// Stores `bytes` as the snapshot `tag` unless it is stored already; whether it stored
    /// them.
    pub async fn put_snapshot(&self, tag: &SnapshotRef, bytes: &[u8]) -> Result<bool, FleetError> {
        retry(|| async {
            if self.has_snapshot(tag).await? {
                return Ok(false);
            }
            let mut reader = bytes;
            self.snapshots
                .put(tag.as_ref(), &mut reader)
                .await
                .map_err(nats(format!(
                    "storing snapshot `{tag}` in `{SNAPSHOTS_BUCKET}`"
                )))?;
            Ok(true)
        })
        .await
    }

    /// Deletes the snapshot `tag` (a corrupt one); absent is not an error.
    pub async fn delete_snapshot(&self, tag: &SnapshotRef) -> Result<(), FleetError> {
        match self.snapshots.delete(tag.as_ref()).await {
            Ok(()) => Ok(()),
            Err(_) if !self.has_snapshot(tag).await? => Ok(()),
            Err(e) => Err(nats(format!(
                "deleting snapshot `{tag}` from `{SNAPSHOTS_BUCKET}`"
            ))(e)),
        }
    }
}
