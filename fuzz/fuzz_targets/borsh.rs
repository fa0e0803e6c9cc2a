//! Fuzz target `borsh`: borsh decoding of every wire type of `labhit-protocol`
//! (`codec::from_borsh`).
//!
//! The first byte picks the type (its index in `wire-types.txt`, modulo the count); the rest
//! is the message. Invariants: no panic; a message that decodes is the canonical encoding of
//! its value (decoders refuse every other input, see `labhit_protocol::borsh_ext`), so
//! re-encoding gives the same bytes and decoding those gives the same value; the value's JSON
//! decodes to the same value too, as the golden vectors promise.

#![no_main]

use std::fmt::Debug;
use std::sync::OnceLock;

use borsh::{BorshDeserialize, BorshSerialize};
use labhit_protocol::Value;
use labhit_protocol::codec::{from_borsh, from_json, to_borsh, to_json};
use labhit_protocol::executor::{
    ArtifactPath, ArtifactRef, CacheDecision, CommandStep, ExecutorInput, StepResult,
};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `bytes` as a `T` and checks the round trips.
fn round_trip<T>(bytes: &[u8])
where
    T: BorshSerialize + BorshDeserialize + Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(value) = from_borsh::<T>(bytes) else {
        return;
    };
    let encoded = to_borsh(&value).expect("a decoded value encodes");
    assert_eq!(
        encoded, bytes,
        "not canonical: {value:?} re-encodes to other bytes"
    );
    let again = from_borsh::<T>(&encoded).expect("an encoded value decodes");
    assert_eq!(again, value, "borsh round trip changed the value");
    let json = to_json(&value).expect("a decoded value has JSON");
    let from_text = from_json::<T>(&json)
        .unwrap_or_else(|e| panic!("the JSON of {value:?} does not decode: {e}\n{json}"));
    assert_eq!(
        from_text, value,
        "JSON round trip changed the value: {json}"
    );
}

/// A decoder for one wire type.
type Decoder = fn(&[u8]);

/// The decoder for a name of `wire-types.txt`.
fn decoder(name: &str) -> Decoder {
    match name {
        "run-id" => round_trip::<RunId>,
        "step-id" => round_trip::<StepId>,
        "archive-id" => round_trip::<ArchiveId>,
        "snapshot-ref" => round_trip::<SnapshotRef>,
        "stage-id" => round_trip::<StageId>,
        "artifact-path" => round_trip::<ArtifactPath>,
        "artifact-ref" => round_trip::<ArtifactRef>,
        "command-step" => round_trip::<CommandStep>,
        "cache-decision" => round_trip::<CacheDecision>,
        "executor-input" => round_trip::<ExecutorInput>,
        "step-result" => round_trip::<StepResult>,
        "run-status" => round_trip::<RunStatus>,
        "stage-status" => round_trip::<StageStatus>,
        "log-level" => round_trip::<LogLevel>,
        "log-stream" => round_trip::<LogStream>,
        "stage-run" => round_trip::<StageRun>,
        "pipeline-run" => round_trip::<PipelineRun>,
        "log-entry" => round_trip::<LogEntry>,
        "value" => round_trip::<Value>,
        other => panic!("wire-types.txt names `{other}`, which this target cannot decode"),
    }
}

/// The decoders in the order of `wire-types.txt`.
fn decoders() -> &'static [Decoder] {
    static DECODERS: OnceLock<Vec<Decoder>> = OnceLock::new();
    DECODERS.get_or_init(|| {
        include_str!("../wire-types.txt")
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(decoder)
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let decoders = decoders();
    decoders[usize::from(selector) % decoders.len()](message);
});
