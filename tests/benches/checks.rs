//! What the sender checks and the signatures cost per message, in µs, on a DKIM-signed 4 KiB
//! message (RSA-2048 and Ed25519 signatures) whose keys, SPF and DMARC records are served by
//! the test DNS server on loopback (answers cached after the first message, as in a steady
//! load):
//!
//!   cargo bench -p postern-tests --bench checks [-- ITERATIONS]
//!
//! Each stage runs alone, ITERATIONS times, on one core: SPF+DKIM+DMARC+ARC checking (and
//! checking the same message unsigned, as smtp-source sends it), the
//! forward rewrite, ARC sealing (two RSA signatures, our stored verdict as its results), DKIM signing (RSA and Ed25519); and
//! reading a bounce report.

use std::time::Instant;

use postern_domain::pipeline::authenticate;
use postern_domain::rewrite::{self, ForwardContext, Mailbox, SenderFormat};
use postern_tests::harness::TestServer;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let server = TestServer::start_with(&[("mail.alias_domains", "alias.test,signer.test")]).await;
    let ctx = server.running().ctx.clone();
    // Answers as a real zone gives them, negative ones included (DMARC's tree walk asks for
    // `_dmarc.test` too): the resolver caches them, as in a steady load.
    server.dns.cache_negative_answers(300);
    // Publish signer.test's keys, SPF and DMARC, and sign a message with them.
    server.publish_dkim("signer.test").await;
    server.dns.txt("signer.test", "v=spf1 ip4:127.0.0.0/8 -all");
    server.dns.txt("_dmarc.signer.test", "v=DMARC1; p=reject");
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit sed do eiusmod.\r\n";
    let message = format!(
        "From: News <news@signer.test>\r\nTo: shop@alias.test\r\nSubject: bench\r\n\
         Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@signer.test>\r\n\r\n{}",
        filler.repeat(4096 / filler.len())
    );
    let unsigned = message.clone().into_bytes();
    let signed = ctx
        .signers()
        .sign("signer.test", message.into_bytes())
        .expect("sign");
    let mut envelope = postern_domain::Envelope::new(
        "bounce@signer.test".into(),
        "127.0.0.1".parse().expect("ip"),
        "mx.signer.test".into(),
        false,
    );
    envelope.rcpt_to.push("shop@alias.test".into());

    let checks = authenticate::check(&ctx, &envelope, &signed).await;
    assert_eq!(
        checks.dmarc,
        authenticate::Outcome::Pass,
        "{}",
        checks.header
    );
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(authenticate::check(&ctx, &envelope, &signed).await);
    }
    let check_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    // Each check alone, with the service's resolver and caches.
    let each = per_check(&ctx, &signed, iterations).await;
    // smtp-source's load: the same message unsigned (SPF and DMARC only; DMARC fails).
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(authenticate::check(&ctx, &envelope, &unsigned).await);
    }
    let check_unsigned_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;

    let reverse = std::collections::HashMap::from([(
        "news@signer.test".to_string(),
        "news_at_signer_test.abcdefghijklmnopqrst@reply.test".to_string(),
    )]);
    let sender = Mailbox {
        name: Some("News".into()),
        address: "news@signer.test".into(),
    };
    let restore = std::collections::HashMap::new();
    let forward_ctx = ForwardContext {
        alias: "shop@alias.test",
        envelope_from: "bounce@signer.test",
        original_from: Some(&sender),
        reverse_aliases: &reverse,
        restore_ids: &restore,
        sender_format: SenderFormat::At,
        warning: false,
    };
    let started = Instant::now();
    let mut rewritten = Vec::new();
    for _ in 0..iterations {
        rewritten = rewrite::rewrite_forward(&signed, &forward_ctx).expect("rewrite");
    }
    let rewrite_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;

    // Sealed as a delivery does: from the message as stored, our verdict on top.
    let mut stored = checks.header.clone().into_bytes();
    stored.extend_from_slice(&signed);
    let (c, forward) = (ctx.clone(), rewritten.clone());
    let seal_us = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(
                authenticate::seal(&c, &stored, "reply.test", forward.clone()).expect("seal"),
            );
        }
        started.elapsed().as_secs_f64() * 1e6 / iterations as f64
    })
    .await
    .expect("seal task");

    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(
            ctx.signers()
                .sign("reply.test", rewritten.clone())
                .expect("sign"),
        );
    }
    let sign_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;

    // Reading what comes back to a bounce address: every report fixture, in turn.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dsn");
    let reports: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "eml").then(|| std::fs::read(path).ok())?
        })
        .collect();
    let started = Instant::now();
    for i in 0..iterations {
        std::hint::black_box(postern_domain::dsn::read(&reports[i % reports.len()]));
    }
    let report_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    println!(
        "reading a bounce report (DSN, ARF, plain text; {} fixtures): {report_us:.0} µs",
        reports.len()
    );

    println!(
        "each check: SPF {:.0} µs, DKIM (2 signatures) {:.0} µs, ARC {:.0} µs, DMARC {:.0} µs",
        each[0], each[1], each[2], each[3]
    );
    println!("checks of the same message unsigned (SPF+DMARC): {check_unsigned_us:.0} µs");
    println!(
        "per message, {iterations} iterations: checks (SPF+DKIM x2+DMARC+ARC) {check_us:.0} µs; \
         forward rewrite {rewrite_us:.0} µs; ARC seal (2 RSA signatures) {seal_us:.0} µs; \
         DKIM sign (RSA + Ed25519) {sign_us:.0} µs; total {:.0} µs",
        check_us + rewrite_us + seal_us + sign_us
    );
}

/// µs per SPF, DKIM, ARC and DMARC check of `raw` (sent from 127.0.0.1 as
/// bounce@signer.test), each run `iterations` times through the service's own authenticator
/// and caches.
async fn per_check(ctx: &postern_domain::Context, raw: &[u8], iterations: usize) -> [f64; 4] {
    use mail_auth::dmarc::verify::DmarcParameters;
    use mail_auth::spf::verify::SpfParameters;
    use mail_auth::{AuthenticatedMessage, Parameters};
    let (auth, caches) = (ctx.authenticator(), ctx.auth_caches());
    let cached = |p| {
        Parameters::new(p)
            .with_txt_cache(&caches.txt)
            .with_mx_cache(&caches.mx)
            .with_ipv4_cache(&caches.ipv4)
            .with_ipv6_cache(&caches.ipv6)
            .with_ptr_cache(&caches.ptr)
    };
    let message = AuthenticatedMessage::parse(raw).expect("a message");
    let ip = "127.0.0.1".parse().expect("ip");
    let spf_params = || {
        SpfParameters::verify_mail_from(ip, "mx.signer.test", "mx.alias.test", "bounce@signer.test")
    };
    let time = |started: Instant| started.elapsed().as_secs_f64() * 1e6 / iterations as f64;

    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(auth.verify_spf(cached(spf_params())).await);
    }
    let spf_us = time(started);
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(
            auth.verify_dkim(Parameters::new(&message).with_txt_cache(&caches.txt))
                .await,
        );
    }
    let dkim_us = time(started);
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(
            auth.verify_arc(Parameters::new(&message).with_txt_cache(&caches.txt))
                .await,
        );
    }
    let arc_us = time(started);
    let spf = auth.verify_spf(cached(spf_params())).await;
    let dkim = auth
        .verify_dkim(Parameters::new(&message).with_txt_cache(&caches.txt))
        .await;
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(
            auth.verify_dmarc(
                Parameters::new(DmarcParameters::new(&message, &dkim, "signer.test", &spf))
                    .with_txt_cache(&caches.txt),
            )
            .await,
        );
    }
    [spf_us, dkim_us, arc_us, time(started)]
}
