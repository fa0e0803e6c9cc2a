//! The checked-in `FILE_DESCRIPTOR_SET` (served by reflection) decodes and describes the whole
//! contract: the service with every RPC, and the imported `google/protobuf/timestamp.proto`
//! that reflection clients need to resolve `google.protobuf.Timestamp`.

use labhit_proto::FILE_DESCRIPTOR_SET;
use prost::Message as _;
use prost_types::FileDescriptorSet;

#[test]
fn the_descriptor_set_describes_every_rpc_and_its_imports() -> Result<(), prost::DecodeError> {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)?;
    let names: Vec<_> = set.file.iter().filter_map(|f| f.name.as_deref()).collect();
    assert!(
        names.contains(&"google/protobuf/timestamp.proto"),
        "{names:?}"
    );
    let contract = set
        .file
        .iter()
        .find(|f| f.name.as_deref() == Some("labhit/v1/pipeline.proto"))
        .expect("labhit/v1/pipeline.proto is in the set");
    let service = contract
        .service
        .iter()
        .find(|s| s.name.as_deref() == Some("PipelineService"))
        .expect("PipelineService is in the set");
    let methods: Vec<_> = service
        .method
        .iter()
        .filter_map(|m| m.name.as_deref())
        .collect();
    assert_eq!(
        methods,
        [
            "TriggerPipeline",
            "GetPipelineRun",
            "StreamLogs",
            "ListPipelineRuns",
            "CancelPipelineRun",
            "ApprovePipelineStage",
        ]
    );
    // Source info is kept, so reflection clients show the documentation.
    assert!(contract.source_code_info.is_some());
    Ok(())
}
