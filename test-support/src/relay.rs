//! A TCP relay that can freeze a link without closing it.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A loopback TCP relay to `target` that can be frozen: while frozen it forwards nothing either
/// way and closes nothing (what a hung host or a black-holing network looks like to both ends).
pub struct Relay {
    /// Where to connect instead of the target.
    pub addr: std::net::SocketAddr,
    frozen: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

impl Relay {
    /// Starts relaying new connections on a loopback port to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let (frozen, frozen_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut pumps = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pumps.spawn(pump(client_read, server_write, frozen_rx.clone()));
                pumps.spawn(pump(server_read, client_write, frozen_rx.clone()));
            }
        });
        Relay {
            addr,
            frozen,
            _tasks: tasks,
        }
    }

    /// Stops (`true`) or resumes (`false`) forwarding on every connection, new ones included.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read just as the link froze are held until it thaws.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
