//! A DNS server on loopback for trying Postern on a machine with no network:
//!
//!     postern-test-dns [--port 5353] [--records FILE]...
//!
//! Answers what the records files say (`name A|AAAA|MX|TXT value`, `name SERVFAIL`) and
//! NXDOMAIN for every other name, on 127.0.0.1 over UDP and TCP, until stopped. Like a real
//! zone's, its negative answers carry an SOA, so resolvers cache them for 60 s. Point Postern
//! at it with `POSTERN_DNS__NAMESERVERS=127.0.0.1:5353`.

use postern_tests::dns::DnsServer;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut port = 5353u16;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(p)) => match p.parse() {
                Ok(p) => port = p,
                Err(_) => fail(&format!("--port {p}: not a port number")),
            },
            ("--records", Some(f)) => files.push(f),
            _ => fail(&format!("unknown argument `{arg}`")),
        }
    }
    let server = match DnsServer::start_on(port).await {
        Ok(server) => server,
        Err(e) => fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")),
    };
    server.cache_negative_answers(60);
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| fail(&format!("cannot read {file}: {e}")));
        if let Err(e) = server.load(&text) {
            fail(&format!("{file}: {e}"));
        }
    }
    println!("postern-test-dns: listening on {}", server.addr);
    let _ = tokio::signal::ctrl_c().await;
}

fn fail(message: &str) -> ! {
    eprintln!(
        "postern-test-dns: {message}\nusage: postern-test-dns [--port 5353] [--records FILE]..."
    );
    std::process::exit(2);
}
