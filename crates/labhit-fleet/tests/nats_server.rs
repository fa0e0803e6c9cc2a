//! The test-support `nats-server`s start for real, answer clients, and go away on drop.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use labhit_fleet::testing::{
    NATS_SERVER_ENV, NatsCluster, NatsServer, TestServerError, find_binary,
};

/// `PING` answered with `PONG` over a fresh client connection to `url`.
fn ping(url: &str) -> std::io::Result<()> {
    let addr = url.trim_start_matches("nats://");
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    assert!(line.starts_with("INFO "), "{line}");
    (&stream).write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    assert_eq!(line.trim_end(), "PONG");
    Ok(())
}

#[test]
fn a_single_node_answers_and_is_gone_after_drop() {
    let server = NatsServer::start().expect("start nats-server");
    let url = server.url();
    ping(&url).expect("ping");
    drop(server);
    assert!(ping(&url).is_err(), "nats-server still answers after drop");
}

#[test]
fn a_killed_node_restarts_on_its_port() {
    let mut server = NatsServer::start().expect("start nats-server");
    server.kill();
    assert!(ping(&server.url()).is_err(), "a killed node answers");
    server.restart().expect("restart");
    ping(&server.url()).expect("ping after restart");
}

#[test]
fn a_three_node_cluster_answers_on_every_node() {
    let cluster = NatsCluster::start().expect("start the cluster");
    assert_eq!(cluster.nodes.len(), 3);
    for node in &cluster.nodes {
        ping(&node.url()).unwrap_or_else(|e| panic!("{}: {e}", node.name()));
    }
    assert_eq!(cluster.urls().split(',').count(), 3);
}

#[test]
fn a_missing_binary_fails_naming_the_install_script() {
    let err = find_binary(Some("/nonexistent/nats-server".into())).expect_err("no such binary");
    assert!(matches!(err, TestServerError::Missing { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("tools/venv-install.sh nats"), "{message}");
    assert!(message.contains("/nonexistent/nats-server"), "{message}");
    assert!(message.contains(NATS_SERVER_ENV), "{message}");
}
