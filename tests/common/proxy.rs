//! A TCP relay in front of the broker, for the faults a network path brings: it can go silent
//! (pass nothing either way, close nothing, as a broker behind a dead path) or be cut (close
//! every connection through it, then hold new ones open and silent, as a broker that went away
//! while the relay reconnects).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    addr: std::net::SocketAddr,
    silent: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    /// Connections accepted after a cut, held open and silent.
    held: Arc<AtomicUsize>,
    pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the test broker.
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = url::Url::parse(&super::amqp_url()).unwrap();
        let target = format!(
            "{}:{}",
            upstream.host_str().unwrap(),
            upstream.port().unwrap_or(5672)
        );
        let silent = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let task = {
            let (silent, cut, held, pipes) =
                (silent.clone(), cut.clone(), held.clone(), pipes.clone());
            tokio::spawn(async move {
                let mut holding = Vec::new();
                while let Ok((client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        held.fetch_add(1, Ordering::SeqCst);
                        holding.push(client);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(&target).await else {
                        continue;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let mut p = pipes.lock().unwrap();
                    p.push(tokio::spawn(pipe(cr, sw, silent.clone())));
                    p.push(tokio::spawn(pipe(sr, cw, silent.clone())));
                }
            })
        };
        Proxy {
            addr,
            silent,
            cut,
            held,
            pipes,
            task,
        }
    }

    /// The broker URL through the proxy.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// From now on nothing passes either way; nothing is closed.
    pub fn silence(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Closes every connection through the proxy; later ones are held open and silent.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for p in self.pipes.lock().unwrap().drain(..) {
            p.abort();
        }
    }

    /// Connections held since the cut.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for p in self.pipes.lock().unwrap().drain(..) {
            p.abort();
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if silent.load(Ordering::SeqCst) {
            // Hold the connection open and pass nothing on, ever.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
