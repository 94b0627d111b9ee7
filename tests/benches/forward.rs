//! Forwarding throughput: 4 KiB messages through the whole service to a local SMTP sink.
//!
//!   cargo bench -p postern-tests --bench forward [-- MESSAGES CONNECTIONS]
//!
//! Prints how fast messages were accepted (`250` after they are committed to the queue) and
//! how fast they reached the sink. With POSTERN_TEST_DATABASE_URL it runs on PostgreSQL.

use std::time::{Duration, Instant};

use postern_tests::client::SmtpClient;
use postern_tests::harness::TestServer;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(2000);
    let connections = args.get(1).copied().unwrap_or(8).max(1);
    let per_connection = total / connections;
    let total = per_connection * connections;

    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    let alias = server
        .add_alias("me@real.test", Some("bench@alias.test"), &[])
        .await;
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit sed do eiusmod.\r\n";
    let mut body = String::new();
    while body.len() < 3800 {
        body.push_str(filler);
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = server.smtp();
        let alias = alias.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = SmtpClient::ready(addr).await;
            for n in 0..per_connection {
                let sender = format!("sender{}@ext{}.test", n % 50, c);
                let msg = format!(
                    "From: Sender <{sender}>\r\nTo: {alias}\r\nSubject: bench {c}-{n}\r\n\
                     Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b{c}-{n}@ext.test>\r\n\
                     MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}"
                );
                let reply = client.send_mail(&sender, &[&alias], msg.as_bytes()).await;
                assert!(reply.starts_with("250"), "{reply}");
            }
            let _ = client.cmd("QUIT").await;
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let accepted = started.elapsed();
    server.sink.wait_for(total, Duration::from_secs(600)).await;
    let delivered = started.elapsed();
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
        "{total} messages of 4 KiB over {connections} connections on {backend} (forwarded size {size} bytes)"
    );
    println!(
        "accepted (queued, 250): {:.0} msg/s  ({:.2?})",
        total as f64 / accepted.as_secs_f64(),
        accepted
    );
    println!(
        "delivered to the sink:  {:.0} msg/s  ({:.2?})",
        total as f64 / delivered.as_secs_f64(),
        delivered
    );
}
