//! Chromium driven over WebDriver (Debian's chromium and chromedriver) for the console's
//! tests: a headless session, the text of an element once it is there, a page loaded until
//! it shows something, and the login form filled in.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use super::{eventually, free_port};

pub const WAIT: Duration = Duration::from_secs(30);

/// chromedriver on a free port, killed when dropped.
pub struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
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
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    eventually(WAIT, "chromedriver listens", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        &format!("--user-data-dir={}", driver._profile.path().display()),
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

/// The text of `css` on the current page, once it is there (a click's page may still load).
pub async fn text(b: &Client, css: &str) -> String {
    for _ in 0..(WAIT.as_millis() / 100) {
        if let Ok(e) = b.find(Locator::Css(css)).await {
            return e.text().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {css} on {}:\n{}",
        b.current_url().await.unwrap(),
        b.source().await.unwrap()
    );
}

pub async fn count(b: &Client, css: &str) -> usize {
    b.find_all(Locator::Css(css)).await.unwrap().len()
}

/// Waits until the page at `url` (loaded again each time) has `css` with text containing
/// `want`.
pub async fn until_page(b: &Client, url: &str, css: &str, want: &str) {
    for _ in 0..(WAIT.as_millis() / 200) {
        b.goto(url).await.unwrap();
        if let Ok(e) = b.find(Locator::Css(css)).await
            && e.text().await.is_ok_and(|t| t.contains(want))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{url}: no {css} with {want:?}:\n{}",
        b.source().await.unwrap()
    );
}

pub async fn screenshot(b: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") {
        let png = b.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

/// Logs in at `{base}/login` with `token`, through the form, as a person would.
pub async fn log_in(b: &Client, base: &str, token: &str) {
    b.goto(&format!("{base}/login")).await.unwrap();
    b.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    b.find(Locator::Id("log-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(WAIT, "the login's page", || async {
        b.current_url().await.unwrap().path() != "/login"
            || b.find(Locator::Id("error")).await.is_ok()
    })
    .await;
}
