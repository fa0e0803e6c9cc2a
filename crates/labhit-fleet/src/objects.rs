//! Reading an object of a JetStream object store without creating a consumer.
//!
//! The client's `ObjectStore::get` reads an object's chunks through a new ordered consumer,
//! which `nats-server` keeps for its inactivity threshold after the read ended. A busy
//! fleet reads an archive for every stage, so those consumers piled up by the thousand until
//! the server refused new ones (`maximum consumers limit reached`) and every read was
//! retried until the oldest had expired (≈ 25 s per run in the throughput benchmark).
//!
//! [`read`] asks the stream's leader for the chunks one by one instead (`STREAM.MSG.GET`,
//! next message of the object's chunk subject after the last one read): no state on the
//! server, and a read right after the writer's acknowledged `put` sees every chunk, which a
//! direct get answered by a lagging replica would not.

use async_nats::jetstream::object_store::{InfoError, InfoErrorKind, ObjectInfo, ObjectStore};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};

use crate::setup::{FleetError, nats};

/// The info of object `name` of `store` if it is stored; `None` when it is not, including
/// when it was deleted (a deleted object leaves a marker behind, which is not "stored").
pub(crate) async fn stored(
    store: &ObjectStore,
    name: &str,
) -> Result<Option<ObjectInfo>, InfoError> {
    match store.info(name).await {
        Ok(info) if info.deleted => Ok(None),
        Ok(info) => Ok(Some(info)),
        Err(e) if matches!(e.kind(), InfoErrorKind::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The content of the object `info` describes, read from its bucket's `stream`.
///
/// Reading stops at the size the object's metadata states. An object whose chunks end
/// before that (deleted or purged under the reader) yields fewer bytes: every caller checks
/// the content against its name (an archive's id, a snapshot's digests), which reports it as
/// corrupt. A NATS failure is an error (callers retry those).
pub(crate) async fn read(stream: &Stream, info: &ObjectInfo) -> Result<Vec<u8>, FleetError> {
    let subject = format!("$O.{}.C.{}", info.bucket, info.nuid);
    let what = || format!("reading object `{}` of bucket `{}`", info.name, info.bucket);
    // The metadata is not trusted for an allocation: chunks are appended as they come.
    let mut bytes = Vec::new();
    let mut next = 1;
    while bytes.len() < info.size {
        let chunk = match stream
            .raw_message_builder()
            .next_by_subject(subject.clone())
            .sequence(next)
            .send()
            .await
        {
            Ok(chunk) => chunk,
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => break,
            Err(e) => return Err(nats(what())(e)),
        };
        let room = info.size - bytes.len();
        bytes.extend_from_slice(&chunk.payload[..chunk.payload.len().min(room)]);
        next = chunk.sequence + 1;
    }
    Ok(bytes)
}
