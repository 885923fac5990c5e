//! Who may get in: TLS (`rediss://`, a private CA the test makes, client certificates)
//! and an ACL user limited to one namespace's keys and channel, against servers the
//! tests start. A wrong certificate is an error at `build`, never a hang; a recorder
//! of another namespace is refused by the server itself; ids chosen to break out of
//! the key layout stay fields of their namespace's keys, never key names, and inside
//! the namespace the user may touch.
//!
//! The certificates are made by `openssl` (installed by `.ci/test` when missing) in a
//! temporary directory removed at the end.
#![cfg(feature = "redis")]

mod common;
#[path = "support/redis_recorder.rs"]
mod redis_recorder;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use async_tasks_recorder::redis::{acl_rules, RedisRecorder};
use async_tasks_recorder::{StoreError, TaskPhase, TaskState};
use common::{bounded, ok};
use redis_recorder::recorder;
use redis_server::RedisServer;

async fn lifecycle(recorder: &RedisRecorder<String>, other: &RedisRecorder<String>, id: &str) {
    let id = id.to_string();
    let mut events = other.subscribe();
    recorder
        .launch(id.clone(), async { Ok::<_, ()>(()) })
        .await
        .expect("the launch");
    let settled = bounded("wait", other.wait(&id)).await.expect("wait");
    assert_eq!(settled.state(), TaskState::Success);
    // The other recorder's subscription, on its own connection, heard both moves.
    let mut moves = Vec::new();
    while moves.len() < 2 {
        let event = bounded("event", events.next())
            .await
            .expect("open")
            .expect("no loss");
        if event.id == id {
            moves.push((event.from, event.to));
        }
    }
    assert_eq!(
        moves,
        [
            (TaskPhase::NotFound, TaskPhase::Working),
            (TaskPhase::Working, TaskPhase::Success)
        ]
    );
    assert_eq!(
        other.query_task_state(&id).await.expect("query"),
        TaskState::Success
    );
    let revoked = recorder
        .revoke_task_block(id.clone(), async { Ok::<_, ()>(()) })
        .await;
    assert!(revoked.is_ok(), "the revoke");
    assert_eq!(
        other.query_task_state(&id).await.expect("query"),
        TaskState::NotFound
    );
}

fn builder(url: String, namespace: &str) -> async_tasks_recorder::redis::RedisBuilder<String> {
    RedisRecorder::builder(url)
        .namespace(namespace)
        .connect_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(5))
}

/// TLS: a private CA, client certificates, and what an untrusted certificate gets.
#[cfg(feature = "redis-tls")]
mod tls {
    use std::path::PathBuf;
    use std::process::Command;

    use super::redis_server::{free_port, make_temp_dir, RedisServer};
    use super::*;

    /// A directory of PEM files: a CA, a server certificate for 127.0.0.1 and a client
    /// certificate signed by it, and a second CA that signed nothing. Removed when dropped.
    struct Certs {
        dir: PathBuf,
    }

    impl Certs {
        fn make() -> Certs {
            let certs = Certs {
                dir: make_temp_dir(),
            };
            const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
            for ca in ["ca", "other-ca"] {
                certs.openssl(&format!(
                    "req -x509 {EC} -days 2 -subj /CN=atr-test-{ca} -keyout {ca}.key -out {ca}.crt"
                ));
            }
            std::fs::write(
                certs.dir.join("leaf.ext"),
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
            )
            .expect("the extensions file");
            for leaf in ["server", "client"] {
                certs.openssl(&format!(
                    "req {EC} -subj /CN=atr-test-{leaf} -keyout {leaf}.key -out {leaf}.csr"
                ));
                certs.openssl(&format!(
                    "x509 -req -in {leaf}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                     -extfile leaf.ext -out {leaf}.crt"
                ));
            }
            certs
        }

        /// Runs `openssl` with `args` (split at spaces) in the directory.
        fn openssl(&self, args: &str) {
            let args: Vec<&str> = args.split_whitespace().collect();
            let out = Command::new("openssl")
                .args(&args)
                .current_dir(&self.dir)
                .output()
                .expect("openssl runs (bash .ci/test installs it when missing)");
            assert!(
                out.status.success(),
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        fn path(&self, name: &str) -> String {
            self.dir.join(name).display().to_string()
        }

        fn pem(&self, name: &str) -> Vec<u8> {
            std::fs::read(self.dir.join(name)).expect("a PEM file")
        }
    }

    impl Drop for Certs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A server with a TLS port next to its plain one (which the harness probes), asking
    /// for client certificates when `clients` is true.
    fn tls_server(certs: &Certs, clients: bool) -> (RedisServer, u16) {
        let port = free_port();
        let (cert, key, ca) = (
            certs.path("server.crt"),
            certs.path("server.key"),
            certs.path("ca.crt"),
        );
        let port_text = port.to_string();
        let server = RedisServer::start_with(&[
            "--tls-port",
            &port_text,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            if clients { "yes" } else { "no" },
        ]);
        (server, port)
    }

    fn tls_url(port: u16) -> String {
        format!("rediss://127.0.0.1:{port}/")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_with_a_private_ca() {
        let certs = Certs::make();
        let (_server, port) = tls_server(&certs, false);
        let build = || {
            builder(tls_url(port), "tls")
                .tls_root_certificates(certs.pem("ca.crt"))
                .build()
        };
        let a = bounded("build", build())
            .await
            .expect("a TLS recorder builds");
        let b = bounded("build", build()).await.expect("a second one");
        lifecycle(&a, &b, "over-tls").await;
        assert_eq!(a.counts().await.expect("counts").total(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_untrusted_server_certificate_is_an_error_at_build() {
        let certs = Certs::make();
        let (_server, port) = tls_server(&certs, false);
        // Signed by a CA the recorder was not told to trust; and by none the system trusts.
        let other_ca = builder(tls_url(port), "tls")
            .tls_root_certificates(certs.pem("other-ca.crt"))
            .build();
        let system_roots = builder(tls_url(port), "tls").build();
        for refused in [
            bounded("build", other_ca).await,
            bounded("build", system_roots).await,
        ] {
            let e = refused.expect_err("the server's certificate is not trusted");
            assert!(matches!(e, StoreError::AuthFailed(_)), "{e:?}");
            assert!(!e.is_transient(), "retrying cannot help: {e:?}");
            assert!(e.message().contains("certificate"), "says why: {e}");
        }
        // A plain URL to the TLS port gets no answer it understands: an error, in time.
        let plain = bounded(
            "build",
            builder(format!("redis://127.0.0.1:{port}/"), "tls").build(),
        );
        assert!(plain.await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_certificates() {
        let certs = Certs::make();
        let (_server, port) = tls_server(&certs, true);
        let with_cert = || {
            builder(tls_url(port), "mtls")
                .tls_root_certificates(certs.pem("ca.crt"))
                .tls_client_certificate(certs.pem("client.crt"), certs.pem("client.key"))
                .build()
        };
        let a = bounded("build", with_cert())
            .await
            .expect("with a client certificate");
        let b = bounded("build", with_cert()).await.expect("a second one");
        lifecycle(&a, &b, "mutual").await;

        let without = builder(tls_url(port), "mtls")
            .tls_root_certificates(certs.pem("ca.crt"))
            .build();
        let e = bounded("build", without)
            .await
            .expect_err("the server wants a certificate");
        assert!(
            matches!(e, StoreError::AuthFailed(_)),
            "an answer, not a hang: {e:?}"
        );
        assert!(
            e.message().to_lowercase().contains("certificate"),
            "says why: {e}"
        );
    }

    #[tokio::test]
    async fn certificates_without_tls_are_a_bad_setting() {
        let certs = Certs::make();
        let e = builder("redis://127.0.0.1:1/".into(), "x")
            .tls_root_certificates(certs.pem("ca.crt"))
            .build()
            .await
            .expect_err("certificates need rediss://");
        assert!(matches!(e, StoreError::InvalidConfig(_)), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_limited_to_its_namespace() {
    let server = RedisServer::start();
    // The rules the crate documents for a namespace's user, given to the server as is.
    let rules = acl_rules("a").expect("rules for namespace a");
    let mut args = vec!["ACL", "SETUSER", "user-a", "on", ">secret-of-a"];
    args.extend(rules.split(' '));
    assert_eq!(server.cli(&args).trim(), "OK");
    let url = format!("redis://user-a:secret-of-a@127.0.0.1:{}/", server.port());
    // What the client sends outside the functions and transactions: the
    // subscription's pings, and a cluster client's slot map.
    for command in [&["PING"][..], &["CLUSTER", "SLOTS"]] {
        let mut dry = vec!["ACL", "DRYRUN", "user-a"];
        dry.extend_from_slice(command);
        assert_eq!(server.cli(&dry).trim(), "OK", "{command:?}");
    }

    // Its own namespace: everything works (the settings check cannot read CONFIG and
    // says so in a warning).
    let build = || builder(url.clone(), "a").build();
    let a = bounded("build", build())
        .await
        .expect("user-a runs namespace a");
    let b = bounded("build", build()).await.expect("a second one");
    assert!(
        a.warnings().iter().any(|w| w.contains("could not be read")),
        "{:?}",
        a.warnings()
    );
    lifecycle(&a, &b, "plain").await;
    // Ids made to look like other keys or namespaces stay fields of namespace a's
    // hashes: the server, which checks every key a function touches against the
    // user's patterns, lets them through.
    for hostile in [
        "}:{b.0}:working",
        "{b.meta}",
        "x}\r\n{",
        "atr:{b.0}:success",
        "*",
    ] {
        lifecycle(&a, &b, hostile).await;
    }
    assert_eq!(a.counts().await.expect("counts").total(), 0);
    let listed = a.ids_in_state(TaskState::Success).await.expect("listing");
    assert!(listed.is_empty(), "{listed:?}");

    // Another namespace with the same user: the server refuses it.
    let other = bounded("build", builder(url.clone(), "b").build()).await;
    let e = other.expect_err("user-a may not touch namespace b");
    assert!(matches!(e, StoreError::AuthFailed(_)), "{e:?}");
    assert!(
        e.message().contains("no permissions"),
        "the server's refusal: {e}"
    );
    // And no key of namespace b was written.
    let keys = server.cli(&["KEYS", "atr:{b.*"]);
    assert_eq!(keys.trim(), "", "{keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_chosen_by_an_attacker_stay_inside_the_namespace() {
    let server = RedisServer::start();
    let rec: RedisRecorder<String> = recorder(&server, "tenant", Duration::from_secs(30)).await;
    let other: RedisRecorder<String> = recorder(&server, "other", Duration::from_secs(30)).await;
    let hostile = [
        "{tenant.0}:work",
        "}{",
        "a:b:c",
        "line\nbreak\r\n",
        "atr:{other.meta}",
        "",
        "*",
        "\u{0}nul",
        "../../etc/passwd",
    ];
    for id in hostile {
        bounded("launch_block", rec.launch_block(id.to_string(), ok()))
            .await
            .unwrap();
    }
    for id in hostile {
        assert_eq!(
            rec.query_task_state(id).await.unwrap(),
            TaskState::Success,
            "{id:?}"
        );
        // The other namespace knows none of them.
        assert_eq!(
            other.query_task_state(id).await.unwrap(),
            TaskState::NotFound,
            "{id:?}"
        );
    }
    let mut listed = rec.ids_in_state(TaskState::Success).await.unwrap();
    listed.sort();
    let mut want: Vec<String> = hostile.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want, "every id comes back byte for byte");
    // Ids are fields of the layout's keys, never part of a key's name: the only keys
    // are those of the two namespaces' layouts.
    let keys = server.cli(&["--raw", "KEYS", "*"]);
    let layout_key = |key: &str| {
        ["tenant", "other"].iter().any(|ns| {
            let Some(rest) = key.strip_prefix(&format!("atr:{{{ns}.")) else {
                return false;
            };
            rest == "meta}"
                || rest.split_once("}:").is_some_and(|(group, suffix)| {
                    group.bytes().all(|b| b.is_ascii_digit())
                        && [
                            "work", "lease", "succ", "fail", "rvk", "seq", "fexp", "sexp",
                        ]
                        .contains(&suffix)
                })
        })
    };
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(!keys.is_empty());
    for key in keys {
        assert!(layout_key(key), "a key outside the layouts: {key:?}");
    }
    // The other namespace's counts are untouched.
    assert_eq!(other.counts().await.unwrap().total(), 0);
}
