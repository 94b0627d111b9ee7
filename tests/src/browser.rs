//! A real browser for the web UI's tests: Debian's chromium, headless, driven over WebDriver
//! by Debian's chromedriver, which the test starts on a loopback port and stops on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// The chromedriver and chromium binaries; `CHROMEDRIVER` and `CHROMIUM` override them.
fn binary(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

pub struct Browser {
    pub client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
    /// Where screenshots go: `target/screenshots`.
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a fresh profile, `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("addr").port()
        };
        let mut child = std::process::Command::new(binary("CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (install Debian's chromium-driver)");
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let driver = Driver(child);
        // chromedriver says when it listens: wait for that line, not for a while.
        let ready = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let ready = lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains("started successfully"));
            // Keep draining, so chromedriver never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            ready
        });
        let ready = tokio::time::timeout(Duration::from_secs(30), ready).await;
        assert!(
            matches!(ready, Ok(Ok(true))),
            "chromedriver did not say it was listening"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": binary("CHROMIUM", "/usr/bin/chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--disable-default-apps", "--no-default-browser-check",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session from chromedriver: {e}"));
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&shots).ok();
        Browser {
            client,
            _driver: driver,
            _profile: profile,
            shots,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("page loads");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Clicks something that stays on the page (a `<summary>`, a copy button).
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Clicks a link or a form's button and waits until the next page is there. The page being
    /// left is marked first, so the wait is for a document without the mark: reading right after
    /// a click could otherwise see either page. (WebDriver waits for a navigation's load before
    /// it answers a find.)
    pub async fn follow(&self, css: &str) {
        self.eval("document.documentElement.dataset.leaving = '1'; return null;")
            .await;
        self.click(css).await;
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("html:not([data-leaving])"))
            .await
            .unwrap_or_else(|e| panic!("no new page within 10 s of clicking {css}: {e}"));
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
    }

    /// The visible text of the page's main content.
    pub async fn text(&self) -> String {
        self.find("main").await.text().await.expect("text")
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.expect("url").to_string()
    }

    /// Runs a script and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("script runs")
    }

    /// Whether the page is wider than the window (a horizontal scrollbar).
    pub async fn overflows(&self) -> bool {
        self.eval("return document.documentElement.scrollWidth > window.innerWidth;")
            .await
            .as_bool()
            .unwrap_or(true)
    }

    /// Saves a screenshot as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("save screenshot");
    }

    /// Ends the session (chromium exits); chromedriver stops when the browser is dropped.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// The chromedriver process, killed when the test ends, however it ends.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
