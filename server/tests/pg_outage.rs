//! Postgres stopped in the middle of editing and started again: live editing goes on from
//! memory, `/readyz` reports the outage, and every edit made during it is in the database
//! afterwards. This stops the machine's real Postgres cluster, so it lives in a test binary
//! of its own (cargo runs test binaries one after another).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Client, PgDatabase, Server};

/// The local Postgres cluster, started again when dropped (also when a test panics).
struct Cluster {
    version: String,
}

impl Cluster {
    fn local() -> Cluster {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("a Debian Postgres cluster under /etc/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .max()
            .expect("a cluster version");
        Cluster { version }
    }

    fn ctl(&self, action: &str) {
        let status = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.version, "main", action])
            .args(if action == "stop" {
                &["-m", "fast"][..]
            } else {
                &[]
            })
            .status()
            .expect("pg_ctlcluster");
        assert!(status.success(), "pg_ctlcluster {action}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.version, "main", "start"])
            .status();
    }
}

fn type_tokens(c: &Client, tag: &str, n: usize) {
    for i in 0..n {
        let at = if i % 2 == 0 { 0 } else { u32::MAX };
        c.insert(at, &format!("<{tag}.{i}>"));
    }
}

async fn wait_ready(server: &Server, ready: bool) {
    let want = if ready { 200 } else { 503 };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = server.http("/readyz");
        if status == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {status}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_editing_and_restarted_loses_nothing() {
    let db = PgDatabase::create().await;
    let mut server = Server::start_with_db(&db.url, &["--group-commit-ms", "50"]);
    let a = Client::connect(&server.acks_url("outage")).await;
    let b = Client::connect(&server.acks_url("outage")).await;
    type_tokens(&a, "before", 10);
    a.wait_saved().await;
    wait_ready(&server, true).await;

    let cluster = Cluster::local();
    cluster.ctl("stop");
    // Editing goes on between live clients while the database is down.
    type_tokens(&a, "a", 25);
    type_tokens(&b, "b", 25);
    for c in [&a, &b] {
        c.wait_text(
            |t| t.matches('<').count() == 60,
            "live sync during the outage",
        )
        .await;
    }
    wait_ready(&server, false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        a.saved() < Some(a.sent_updates()),
        "nothing written during the outage may be acknowledged"
    );
    let expected = a.text();
    assert_eq!(b.text(), expected);

    cluster.ctl("start");
    wait_ready(&server, true).await;
    a.wait_saved().await;
    b.wait_saved().await;
    drop(cluster);

    server.kill();
    server.restart();
    let c = Client::connect(&server.url("outage")).await;
    assert_eq!(
        c.text(),
        expected,
        "every edit made during the outage is stored"
    );
    assert_eq!(c.state_vector(), a.state_vector());
}
