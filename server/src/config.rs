//! Command-line flags, each with an environment twin (`--listen` / `TANDEM_LISTEN`), so the
//! same binary is configured by hand, by systemd units and by test harnesses alike. Every
//! limit is here, with a default sized for one machine serving thousands of clients.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Longest delay the open-ended delay flags accept (a day). A larger value is a slip (a
/// figure in microseconds, a zero too many), not a wish; refusing it at start says so,
/// where accepting it would leave a timer that never fires.
const MAX_DELAY_MS: u64 = 86_400_000;

/// tandem-server: a y-websocket-compatible sync hub.
#[derive(Debug, Clone, Parser)]
#[command(name = "tandem-server", version, about)]
pub struct Config {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Cmd>,

    /// Where documents are stored: `postgres://user@host/db` or `sqlite://path` (the
    /// SQLite file and its folder are created if missing).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://./data/tandem.db",
        global = true
    )]
    pub database_url: String,

    /// Redis for cluster mode (`redis://127.0.0.1:6379`): nodes sharing it (and one
    /// Postgres `--database-url`) serve the same documents. Unset: a single node.
    #[arg(long, env = "TANDEM_REDIS_URL")]
    pub redis_url: Option<String>,

    /// This node's id in the cluster (a UUID; default: a new one per start). Tags what the
    /// node publishes and the update-log rows it writes.
    #[arg(long, env = "TANDEM_NODE_ID")]
    pub node_id: Option<uuid::Uuid>,

    /// Prefix of the Redis channels (`{prefix}:doc:{name}`), so several clusters can share
    /// one Redis.
    #[arg(long, env = "TANDEM_REDIS_PREFIX", default_value = "tandem")]
    pub redis_prefix: String,

    /// Frames from other nodes one document may have waiting (cluster mode). A document
    /// slower than the others' edits drops what does not fit and then asks the other
    /// nodes for what it lacks, as after a Redis outage: the wait never holds up the other
    /// documents (they share one Redis connection), and memory stays bounded.
    #[arg(long, env = "TANDEM_CLUSTER_QUEUE", default_value_t = 8192,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub cluster_queue: usize,

    /// Milliseconds between group commits: updates arriving meanwhile are written in one
    /// transaction. Lower means earlier "saved" acknowledgements, higher fewer transactions.
    /// At most 60000: a longer wait only delays acknowledgements. A shutdown's last flush
    /// and a delete do not wait for it.
    #[arg(long, env = "TANDEM_GROUP_COMMIT_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub group_commit_ms: u64,

    /// Log entries after the snapshot that trigger a compaction (a new snapshot replacing
    /// them), keeping cold loads short.
    #[arg(long, env = "TANDEM_COMPACT_AFTER_UPDATES", default_value_t = 1000)]
    pub compact_after_updates: usize,

    /// Bytes of log after the snapshot that trigger a compaction.
    #[arg(long, env = "TANDEM_COMPACT_AFTER_BYTES", default_value_t = 1 << 20)]
    pub compact_after_bytes: usize,

    /// Durable updates each loaded document also keeps in memory (besides those not yet
    /// durable), so SSE clients and long-pollers a moment behind catch up without a
    /// database read; readers further behind are served from the stored log.
    #[arg(long, env = "TANDEM_RESUME_WINDOW_UPDATES", default_value_t = 64)]
    pub resume_window_updates: usize,

    /// Bytes of those durable updates at most.
    #[arg(long, env = "TANDEM_RESUME_WINDOW_BYTES", default_value_t = 64 << 10)]
    pub resume_window_bytes: usize,

    /// Milliseconds between heartbeat comments on an idle SSE stream (proxies drop silent
    /// connections). From 100 to 3600000 (an hour).
    #[arg(long, env = "TANDEM_SSE_HEARTBEAT_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub sse_heartbeat_ms: u64,

    /// Longest a long-poll may wait (seconds); `timeout=` asks for less (default 25).
    /// From 1 to 3600.
    #[arg(long, env = "TANDEM_MAX_POLL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub max_poll_seconds: u64,

    /// Folder holding the browser client (`pkg/`, built by `scripts/build-client`) and the
    /// demo pages (`www/`), served at `/`, `/d/{doc}`, `/pkg/` and `/static/`.
    #[arg(long, env = "TANDEM_WEB_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../client-wasm"))]
    pub web_dir: std::path::PathBuf,

    /// Milliseconds shutdown waits for the last updates to reach the database before
    /// giving up on them, if the database is down by then (while it answers, shutdown
    /// waits up to 10 s for the commit under way, however short this is). At most
    /// 86400000 (a day).
    #[arg(long, env = "TANDEM_SHUTDOWN_FLUSH_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(0..=MAX_DELAY_MS))]
    pub shutdown_flush_ms: u64,

    /// Address to listen on (loopback by default; put a reverse proxy in front for TLS).
    #[arg(long, env = "TANDEM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Listen queue length. The kernel default (128) overflows in connect storms and
    /// costs every dropped client a 1 s SYN retry.
    #[arg(long, env = "TANDEM_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,

    /// Largest accepted WebSocket message (bytes); bigger ones close the connection with 1009.
    #[arg(long, env = "TANDEM_MAX_FRAME_BYTES", default_value_t = 16 << 20)]
    pub max_frame_bytes: usize,

    /// Largest document (bytes of its encoded state); updates that would grow a document
    /// beyond it are refused and the sender is closed with 1008 (HTTP: 413).
    #[arg(long, env = "TANDEM_MAX_DOC_BYTES", default_value_t = 64 << 20)]
    pub max_doc_bytes: usize,

    /// Secret that signs access tokens (HMAC-SHA256 JWTs). When set, every route that reads
    /// or writes a document requires a token; when unset the server is open to anyone who
    /// can reach it (and says so loudly at start).
    #[arg(long, env = "TANDEM_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Milliseconds a WebSocket without a token in its URL or headers has to send its
    /// token as the first frame (an auth message) before it is closed with 4401. From 1 to
    /// 3600000 (an hour).
    #[arg(long, env = "TANDEM_AUTH_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub auth_timeout_ms: u64,

    /// Milliseconds a client has to send a whole request head: the first one on a new
    /// connection (for a WebSocket, its upgrade; up to twice this if it arrives in pieces,
    /// since the first bytes and then the rest each get this long) and each next one on a
    /// kept-alive HTTP connection. A connection that is silent or slower is closed, so
    /// clients that never finish a request head (slowloris) cannot pile up sockets and
    /// memory; a first request that times out counts in
    /// `tandem_limit_exceeded_total{limit="header_timeout"}`, an idle kept-alive connection
    /// does not. A reverse proxy should keep idle upstream connections for less than this.
    /// From 100 to 3600000 (an hour).
    #[arg(long, env = "TANDEM_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub header_timeout_ms: u64,

    /// Milliseconds a client has, once its request head is in, to send the whole body of a
    /// POST (an update or presence over plain HTTP, a document import). Slower, and it gets
    /// 408 and its connection is closed, with nothing of the body applied: a client that
    /// trickles a body byte by byte cannot hold a socket and a task for ever. Counts in
    /// `tandem_limit_exceeded_total{limit="body_timeout"}`. The default sends
    /// `--max-frame-bytes` (16 MiB) at 4.5 Mbit/s; raise it for large imports over slow
    /// links. From 100 to 3600000 (an hour).
    #[arg(long, env = "TANDEM_BODY_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub body_timeout_ms: u64,

    /// Milliseconds a response write to a plain HTTP connection (an export, an event stream,
    /// a long-poll's answer) may wait without the client taking a byte; then the connection
    /// is closed. A client that stops reading would otherwise hold its connection and the
    /// unsent part of its answer for ever. The clock runs only while a write waits, so slow
    /// readers that keep reading and idle connections are not cut off. Counts in
    /// `tandem_limit_exceeded_total{limit="write_timeout"}`. WebSockets bound their writes
    /// by `--ping-interval-ms` instead. From 100 to 3600000 (an hour).
    #[arg(long, env = "TANDEM_WRITE_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub write_timeout_ms: u64,

    /// Messages a connection may send per second on average (token bucket). A fast
    /// typist with a moving cursor sends about 20; more is a runaway or hostile client,
    /// closed with 1008.
    #[arg(long, env = "TANDEM_MAX_MESSAGES_PER_SECOND", default_value_t = 100)]
    pub max_messages_per_second: u32,

    /// Messages a connection may send at once above that rate (the bucket's size): a
    /// reconnect or a paste sends a burst.
    #[arg(long, env = "TANDEM_MESSAGE_BURST", default_value_t = 500)]
    pub message_burst: u32,

    /// Simultaneous WebSocket and SSE connections from one IP address, or IPv6 /64 (0: no
    /// limit).
    /// Further ones are closed with 1008 (SSE: 429). Behind a reverse proxy every client
    /// shares the proxy's address: raise it or set 0 there.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// HTTP requests that reach a document (posted updates and presence, long-polls,
    /// imports and exports) one IP address (an IPv6 /64) may make per second on average
    /// (token bucket; 0: no limit). Further ones get 429 with `Retry-After`. A browser tab on the HTTP fallback has one post and one
    /// poll in flight at a time, so hundreds of tabs fit; behind a reverse proxy every
    /// client shares the proxy's address: raise it or set 0 there.
    #[arg(long, env = "TANDEM_MAX_HTTP_REQUESTS_PER_IP", default_value_t = 1000)]
    pub max_http_requests_per_ip: u32,

    /// HTTP requests one address may make at once above that rate (the bucket's size).
    #[arg(long, env = "TANDEM_HTTP_REQUEST_BURST_PER_IP", default_value_t = 2000)]
    pub http_request_burst_per_ip: u32,

    /// Browser origins allowed to use documents (comma-separated, e.g.
    /// `https://app.example.com`): WebSockets and the HTTP routes of `/api/docs/{doc}`
    /// (403); empty allows every origin. Requests without an `Origin` header
    /// (non-browser clients, same-origin reads) are not affected.
    #[arg(long, env = "TANDEM_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Largest awareness (presence) state of one client, in bytes of JSON; a larger one
    /// closes the connection with 1008 (HTTP: 413). Presence is relayed to every client and
    /// kept in memory, so one client must not make it huge.
    #[arg(long, env = "TANDEM_MAX_AWARENESS_BYTES", default_value_t = 64 << 10)]
    pub max_awareness_bytes: usize,

    /// Most client ids one WebSocket connection or SSE session may publish presence for
    /// at once (a browser tab publishes one), and one IP address posting presence with no
    /// SSE subscription; more closes the connection with 1008 (HTTP: 413). Every state is
    /// kept in memory, relayed to every client and sent to every joiner, so one connection
    /// must not publish thousands.
    #[arg(long, env = "TANDEM_MAX_AWARENESS_CLIENTS", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_awareness_clients: usize,

    /// Milliseconds a document waits between two relays of presence (awareness) changes.
    /// A change is relayed at once when the last relay is older than this; changes that come
    /// faster wait and go out together, one frame for all of them. A join storm of `n`
    /// clients then costs each peer a few frames instead of `n`. 0 relays every change as
    /// it comes, as y-websocket's server does. At most 10000: clients renew their presence
    /// every 15 s and drop a peer's that goes 30 s unrenewed, so a longer window would make
    /// cursors vanish between batches.
    #[arg(long, env = "TANDEM_PRESENCE_BATCH_MS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub presence_batch_ms: u64,

    /// Most simultaneous WebSocket connections; further ones are closed with 1013 (retry later).
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// Frames queued for one connection before it counts as too slow and is closed with
    /// 1013 (it reconnects and resyncs; frames are never silently dropped).
    #[arg(long, env = "TANDEM_OUTBOX_FRAMES", default_value_t = 1024)]
    pub outbox_frames: usize,

    /// Recipients of one broadcast whose frame the document writes to their sockets itself,
    /// when nothing is queued for them, instead of waking their connections' writer tasks:
    /// a task wake-up saved per frame. The rest of a larger audience is written by the
    /// writer tasks, in parallel on the other worker threads (the actor's writes are
    /// serial: with 50 recipients, all written here, scenario A's median latency rose
    /// from about 0.5 to 0.7 ms). 0: every frame goes through the writer tasks.
    #[arg(long, env = "TANDEM_DIRECT_WRITES", default_value_t = 16)]
    pub direct_writes: usize,

    /// Milliseconds a document stays in memory after its last client left (and only once its
    /// state is persisted: content is never dropped from memory unsaved). At most 86400000
    /// (a day).
    #[arg(long, env = "TANDEM_IDLE_UNLOAD_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(0..=MAX_DELAY_MS))]
    pub idle_unload_ms: u64,

    /// Milliseconds between WebSocket pings; a connection that has not answered two pings
    /// in a row is closed. From 10 to 3600000 (an hour).
    #[arg(long, env = "TANDEM_PING_INTERVAL_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub ping_interval_ms: u64,

    /// Per-connection read buffer (bytes): the most read from the socket in one call.
    /// tungstenite's default of 128 KiB would cost ~130 MB per thousand idle connections;
    /// y-protocols frames are mostly tens of bytes, and a larger frame is still read whole
    /// (in chunks of this size). 2 KiB instead of 4 saves 2 MB per thousand connections.
    #[arg(long, env = "TANDEM_READ_BUFFER_BYTES", default_value_t = 2048)]
    pub read_buffer_bytes: usize,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Bring the database schema up to date and exit (the server also does it on start).
    Migrate,
    /// Print an access token signed with `--auth-secret`, for a client or a test.
    Token(TokenArgs),
}

/// What `tandem-server token` signs.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The document: an exact name, or a prefix ending in `*` (`team/*`; `*` is every
    /// document).
    #[arg(long)]
    pub doc: String,
    /// `read` (sync and presence only) or `write`.
    #[arg(long, default_value = "write")]
    pub mode: crate::auth::Mode,
    /// How long the token is valid (`30m`, `1h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The user's display name, recorded as the origin of their updates.
    #[arg(long)]
    pub name: Option<String>,
}

impl Config {
    /// Group commit interval as a [`Duration`].
    pub fn group_commit(&self) -> Duration {
        Duration::from_millis(self.group_commit_ms)
    }

    /// Presence batching window as a [`Duration`].
    pub fn presence_batch(&self) -> Duration {
        Duration::from_millis(self.presence_batch_ms)
    }

    /// Idle unload delay as a [`Duration`].
    pub fn idle_unload(&self) -> Duration {
        Duration::from_millis(self.idle_unload_ms)
    }

    /// Auth frame deadline as a [`Duration`].
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }

    /// Request head deadline as a [`Duration`].
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    /// Request body deadline as a [`Duration`].
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// Response write stall deadline as a [`Duration`].
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// Ping interval as a [`Duration`].
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["tandem-server"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every delay flag with its largest accepted value.
    const DELAYS: &[(&str, u64)] = &[
        ("--group-commit-ms", 60_000),
        ("--sse-heartbeat-ms", 3_600_000),
        ("--shutdown-flush-ms", MAX_DELAY_MS),
        ("--auth-timeout-ms", 3_600_000),
        ("--presence-batch-ms", 10_000),
        ("--idle-unload-ms", MAX_DELAY_MS),
        ("--ping-interval-ms", 3_600_000),
        ("--header-timeout-ms", 3_600_000),
        ("--body-timeout-ms", 3_600_000),
        ("--write-timeout-ms", 3_600_000),
    ];

    #[test]
    fn every_delay_flag_refuses_values_beyond_its_bound_with_a_clear_error() {
        for &(flag, max) in DELAYS {
            Config::try_parse_from(["tandem-server", flag, &max.to_string()])
                .unwrap_or_else(|e| panic!("{flag} {max} refused: {e}"));
            for too_big in [max + 1, u64::MAX] {
                let err = Config::try_parse_from(["tandem-server", flag, &too_big.to_string()])
                    .expect_err(flag);
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ValueValidation,
                    "{flag}"
                );
                assert!(err.to_string().contains(flag), "{err}");
            }
        }
    }

    /// These were silently raised to a floor before; a period of 0 is a mistake to report.
    #[test]
    fn zero_is_refused_where_a_timer_needs_a_period() {
        for flag in [
            "--sse-heartbeat-ms",
            "--auth-timeout-ms",
            "--ping-interval-ms",
            "--header-timeout-ms",
            "--body-timeout-ms",
            "--write-timeout-ms",
        ] {
            assert!(
                Config::try_parse_from(["tandem-server", flag, "0"]).is_err(),
                "{flag}"
            );
        }
        assert!(Config::try_parse_from(["tandem-server", "--max-poll-seconds", "0"]).is_err());
    }
}
