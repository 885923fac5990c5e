//! Checks the test harness that starts throwaway `redis-server`s
//! (`tests/support/redis_server.rs`). Needs `redis-server` and `redis-cli` installed
//! (`bash .ci/test` installs them); no crate feature.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::net::{Ipv4Addr, TcpListener};

use redis_server::RedisServer;

#[test]
fn set_then_get() {
    let server = RedisServer::start();
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(server.cli(&["GET", "k"]), "v");
    assert_eq!(server.cli(&["GET", "missing"]), "");
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert_ne!(server.port(), 6379);
}

#[test]
fn runs_with_the_configuration_asked_for() {
    let server = RedisServer::start();
    let config = |name: &str| server.cli(&["CONFIG", "GET", name]);
    assert_eq!(config("appendonly"), "appendonly\nyes");
    assert_eq!(config("appendfsync"), "appendfsync\nalways");
    assert_eq!(config("save"), "save");
    assert_eq!(config("maxmemory-policy"), "maxmemory-policy\nnoeviction");
    assert_eq!(config("bind"), "bind\n127.0.0.1");
    let dir = config("dir");
    let expected = server
        .dir()
        .canonicalize()
        .expect("the server's directory exists");
    assert_eq!(dir, format!("dir\n{}", expected.display()));
}

#[test]
fn kill9_then_restart_keeps_acknowledged_writes() {
    let mut server = RedisServer::start();
    let port = server.port();
    let first_pid = server.pid().expect("running");
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(server.cli(&["RPUSH", "list", "a", "b", "c"]), "3");

    server.kill9();
    assert_eq!(server.pid(), None);
    assert!(
        server.try_cli(&["PING"]).is_err(),
        "nothing should answer on the port of a killed server"
    );

    server.restart();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(first_pid));
    assert_eq!(server.cli(&["GET", "k"]), "v");
    assert_eq!(server.cli(&["LRANGE", "list", "0", "-1"]), "a\nb\nc");

    // A restart of a running server kills it first.
    server.restart();
    assert_eq!(server.cli(&["GET", "k"]), "v");
}

#[test]
fn two_servers_are_independent() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    assert_eq!(a.cli(&["SET", "k", "a"]), "OK");
    assert_eq!(b.cli(&["GET", "k"]), "");
}

#[test]
fn drop_frees_the_port_and_removes_the_dir() {
    let server = RedisServer::start();
    let port = server.port();
    let dir = server.dir().to_path_buf();
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    assert!(dir.join("redis.log").is_file());
    drop(server);

    assert!(!dir.exists(), "{} should have been removed", dir.display());
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|error| panic!("port {port} should be free after drop: {error}"));
}

#[test]
fn password_protected_server() {
    let mut server = RedisServer::start_with(&["--requirepass", "secret"]);
    assert!(server.cli(&["PING"]).starts_with("NOAUTH"));
    assert_eq!(server.cli(&["-a", "secret", "SET", "k", "v"]), "OK");

    server.kill9();
    server.restart();
    assert_eq!(server.cli(&["-a", "secret", "GET", "k"]), "v");
    assert!(server.cli(&["GET", "k"]).starts_with("NOAUTH"));
}

#[test]
fn an_invalid_argument_fails_the_start_with_the_log() {
    let failure = std::panic::catch_unwind(|| RedisServer::start_with(&["--no-such-option", "1"]))
        .expect_err("an invalid option must fail the start");
    let message = failure
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("exited during its start") && message.contains("no-such-option"),
        "unexpected panic message: {message}"
    );
}

#[test]
fn restart_waits_for_a_briefly_taken_port() {
    let mut server = RedisServer::start();
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    server.kill9();
    let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, server.port()))
        .expect("the port of a killed server is free");
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(squatter);
    });
    server.restart();
    release.join().expect("the releasing thread does not panic");
    assert_eq!(server.cli(&["GET", "k"]), "v");
}
