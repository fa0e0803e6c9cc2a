#[test]
fn dump() {
    println!("{}", serde_json::to_string(&labhit_protocol::schema::pipeline_schema()).unwrap());
    println!("{}", serde_json::to_string(&labhit_protocol::schema::manifest_schema()).unwrap());
}
