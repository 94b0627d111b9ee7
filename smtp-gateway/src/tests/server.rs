use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::support::{Client, TestBackend, test_config};
use crate::serve;

#[tokio::test]
async fn connections_over_the_limit_get_421_and_shutdown_lets_sessions_finish() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let mut config = test_config();
    config.max_connections = 1;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::new(config),
        None,
        Arc::new(TestBackend::default()),
        async {
            let _ = stopped.await;
        },
    ));

    let mut first = Client::new(TcpStream::connect(address).await.expect("connect"));
    first.expect("220 mx.alias.test ESMTP Postern").await;
    let mut second = Client::new(TcpStream::connect(address).await.expect("connect"));
    second
        .expect("421 4.7.0 Too many connections, try again later")
        .await;
    second.expect_closed().await;

    // Shutdown stops accepting but the running session carries on to its QUIT.
    stop.send(()).expect("server running");
    first.ehlo().await;
    first.cmd("QUIT", "221 2.0.0").await;
    first.expect_closed().await;
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops once its sessions end")
        .expect("server did not panic");
}
