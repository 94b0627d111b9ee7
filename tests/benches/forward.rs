//! Forwarding: 4 KiB messages through the whole service to a local SMTP sink.
//!
//!   cargo bench -p postern-tests --bench forward [-- MESSAGES CONNECTIONS ALIASES [RATE]]
//!
//! The database first gets ALIASES aliases (default 1,000), and every message goes to one of
//! them at random, so lookups cannot all come from one warm cache entry. Then, in one run:
//! - peak: CONNECTIONS clients (default 8) send MESSAGES messages (default 2,000) as fast as
//!   they are answered; prints how fast they were accepted (`250` after they are committed to
//!   the queue) and how fast they reached the sink;
//! - latency at half that peak: the same number of messages, each sent at its scheduled time
//!   for half the delivered rate (what the service sustains); prints p50, p99 and max from the last byte of DATA to `250`.
//!
//! With POSTERN_TEST_DATABASE_URL it runs on PostgreSQL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_tests::client::SmtpClient;
use postern_tests::harness::{ALIAS_DOMAIN, TestServer};
use rand::Rng;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(2000);
    let connections = args.get(1).copied().unwrap_or(8).max(1);
    let aliases = args.get(2).copied().unwrap_or(1000).max(1);
    let per_connection = total / connections;
    let total = per_connection * connections;

    // The load generator sends far past the per-client and per-user limits: trusted, as a
    // deployment trusts its own filters in front of it.
    let server = TestServer::start_with(&[("smtp.trusted_networks", "127.0.0.1/32")]).await;
    server.add_user("me@real.test").await;
    let seeding = Instant::now();
    server.seed_aliases("me@real.test", aliases).await;
    let seeded = seeding.elapsed();
    let load = Arc::new(Load::new(aliases));

    // Peak: every client sends its next message as soon as the last one is answered.
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (addr, load) = (server.smtp(), Arc::clone(&load));
            tokio::spawn(async move {
                let mut client = SmtpClient::ready(addr).await;
                for n in 0..per_connection {
                    load.send(&mut client, c, n).await;
                }
                let _ = client.cmd("QUIT").await;
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    let accepted = started.elapsed();
    server.sink.wait_for(total, Duration::from_secs(600)).await;
    let delivered = started.elapsed();
    // The peak is what the service sustains: delivered, not only accepted into the queue.
    let peak = total as f64 / delivered.as_secs_f64();

    // Half the peak (or RATE, to compare builds at the same load), on a schedule: message i is
    // due at i / rate, whoever sends it.
    let half = args.get(3).is_none();
    let rate = args.get(3).map_or(peak / 2.0, |&r| r.max(1) as f64);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (addr, load) = (server.smtp(), Arc::clone(&load));
            tokio::spawn(paced(addr, load, c, connections, total, rate, started))
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    let paced_for = started.elapsed();
    server
        .sink
        .wait_for(2 * total, Duration::from_secs(600))
        .await;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];

    let size = server
        .sink
        .received()
        .first()
        .map(|m| m.data.len())
        .unwrap_or(0);
    let backend = if std::env::var("POSTERN_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "{total} messages of 4 KiB over {connections} connections on {backend}, to {aliases} \
         aliases at random (seeded in {seeded:.1?}; forwarded size {size} bytes)"
    );
    println!(
        "peak, accepted (queued, 250): {:.0} msg/s  ({accepted:.2?})",
        total as f64 / accepted.as_secs_f64()
    );
    println!("peak, delivered to the sink:  {peak:.0} msg/s  ({delivered:.2?})");
    println!(
        "at {} ({rate:.0} msg/s offered, {:.0} msg/s sent): end of DATA to 250 \
         p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        if half { "half the peak" } else { "a set rate" },
        total as f64 / paced_for.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// What every message looks like; only the sender, recipient and subject change.
struct Load {
    aliases: usize,
    body: String,
}

impl Load {
    fn new(aliases: usize) -> Load {
        let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit sed do eiusmod.\r\n";
        Load {
            aliases,
            body: filler.repeat(3800 / filler.len() + 1),
        }
    }

    /// Sends message `n` of client `c` to a random alias; returns the time from the end of
    /// DATA to its `250`.
    async fn send(&self, client: &mut SmtpClient, c: usize, n: usize) -> Duration {
        let alias = format!(
            "bulk{}@{ALIAS_DOMAIN}",
            rand::rng().random_range(0..self.aliases)
        );
        let sender = format!("sender{}@ext{c}.test", n % 50);
        let msg = format!(
            "From: Sender <{sender}>\r\nTo: {alias}\r\nSubject: bench {c}-{n}\r\n\
             Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b{c}-{n}@ext.test>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{}",
            self.body
        );
        for (command, expected) in [
            (format!("MAIL FROM:<{sender}>"), "250"),
            (format!("RCPT TO:<{alias}>"), "250"),
        ] {
            let reply = client.cmd(&command).await;
            assert!(reply.starts_with(expected), "{command}: {reply}");
        }
        let (reply, took) = client.timed_data(msg.as_bytes()).await;
        assert!(reply.starts_with("250"), "{reply}");
        took
    }
}

/// Client `c` of `connections` sends messages c, c + connections, … of `total`, each when it
/// is due at `rate` from `started` (at once when it is late); returns their latencies.
async fn paced(
    addr: SocketAddr,
    load: Arc<Load>,
    c: usize,
    connections: usize,
    total: usize,
    rate: f64,
    started: Instant,
) -> Vec<Duration> {
    let mut client = SmtpClient::ready(addr).await;
    let mut latencies = Vec::new();
    for i in (c..total).step_by(connections) {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        latencies.push(load.send(&mut client, c, total + i).await);
    }
    let _ = client.cmd("QUIT").await;
    latencies
}
