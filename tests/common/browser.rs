//! A headless chromium driven over WebDriver (chromedriver on a free port), for the console
//! tests that look at pages as a browser renders them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};

use super::{eventually, free_port};

/// chromedriver, killed when dropped.
pub struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless chromium session; `None` (the test is skipped) when chromium is not installed
/// outside CI. In CI it must be: `scripts/test` installs it.
pub async fn browser() -> Option<(Driver, Client)> {
    let installed = ["/usr/bin/chromedriver", "/usr/bin/chromium"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromium-driver are missing (scripts/test installs them)"
        );
        eprintln!("skipped: chromium and chromium-driver are not installed");
        return None;
    }
    let port = free_port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        port,
        profile: tempfile::tempdir().unwrap(),
    };
    eventually(
        Duration::from_secs(30),
        "chromedriver listens",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        &format!("--user-data-dir={}", driver.profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    let client = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromium session");
    Some((driver, client))
}
