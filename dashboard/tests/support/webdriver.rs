//! A headless Chromium driven through ChromeDriver's W3C WebDriver protocol (JSON
//! over HTTP on a loopback port), with only what the browser tests need.
//!
//! ChromeDriver is started on a free loopback port, in a process group of its own;
//! when the [`Browser`] is dropped (also when a test fails) its session is ended,
//! which closes the browser, and the whole group is killed. A test process killed
//! by a signal runs no drop: its driver and browser are left to the machine. A missing `chromium` or `chromedriver` fails
//! the test with instructions: browser tests never skip silently.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The longest one WebDriver call may take.
const CALL: Duration = Duration::from_secs(30);

/// Debian's paths (packages `chromium` and `chromium-driver`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser session and the driver process behind it.
pub(crate) struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

/// A page element, as the driver names it.
#[derive(Debug, Clone)]
pub(crate) struct Element(String);

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is needed by the browser tests but is not installed. Install Debian's \
         chromium and chromium-driver, e.g. as root: apt-get install -y chromium \
         chromium-driver (the README's test command does this when it can)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session with a 1200x900 window.
    pub(crate) async fn start() -> Browser {
        require(CHROMIUM);
        require(CHROMEDRIVER);
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");

        let http = reqwest::Client::builder()
            .timeout(CALL)
            .build()
            .expect("an HTTP client");
        let mut browser = Browser {
            driver,
            http,
            session: String::new(),
        };
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = browser.http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == json!(true) {
                    break;
                }
            }
            if let Ok(Some(exit)) = browser.driver.try_wait() {
                panic!("chromedriver stopped before it was ready ({exit}); is port {port} taken?");
            }
            assert!(
                started.elapsed() < CALL,
                "chromedriver did not get ready on port {port} within {CALL:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1200,900",
                        "--no-first-run", "--disable-extensions",
                    ],
                },
            }},
        });
        let created = browser
            .call(
                reqwest::Method::POST,
                &format!("{base}/session"),
                Some(capabilities),
            )
            .await
            .expect("a browser session");
        let id = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.session = format!("{base}/session/{id}");
        browser
    }

    /// One WebDriver call: its `value`, or the driver's error.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = tokio::time::timeout(CALL, request.send())
            .await
            .unwrap_or_else(|_| panic!("hung: the WebDriver call {url}"))
            .unwrap_or_else(|e| panic!("the WebDriver call {url}: {e}"));
        let ok = response.status().is_success();
        let value: Value = response.json().await.expect("a JSON answer");
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if ok {
            Ok(value)
        } else {
            Err(value)
        }
    }

    async fn session(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        self.call(method, &url, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// Opens `url` and waits for it to load.
    pub(crate) async fn open(&self, url: &str) {
        self.session(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The first element `css` selects, if any.
    pub(crate) async fn find(&self, css: &str) -> Option<Element> {
        let url = format!("{}/element", self.session);
        let body = json!({ "using": "css selector", "value": css });
        let found = self
            .call(reqwest::Method::POST, &url, Some(body))
            .await
            .ok()?;
        let id = found.as_object()?.values().next()?.as_str()?.to_string();
        Some(Element(id))
    }

    /// The visible text of the first element `css` selects, read once.
    async fn text_now(&self, css: &str) -> Option<String> {
        let element = self.find(css).await?;
        let url = format!("{}/element/{}/text", self.session, element.0);
        let value = self.call(reqwest::Method::GET, &url, None).await.ok()?;
        Some(value.as_str().unwrap_or_default().to_string())
    }

    /// The visible text of the first element `css` selects, once there is one (a
    /// page a click navigated to may still be loading).
    pub(crate) async fn text(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(text) = self.text_now(css).await {
                return text;
            }
            assert!(started.elapsed() < CALL, "no element {css} on the page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the first element `css` selects reads `want` (after a click, the
    /// next page may take a moment).
    pub(crate) async fn expect_text(&self, css: &str, want: &str) {
        let started = Instant::now();
        loop {
            let seen = self.text_now(css).await;
            if seen.as_deref() == Some(want) {
                return;
            }
            assert!(
                started.elapsed() < CALL,
                "{css} never read {want:?}; last read {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element `css` selects.
    pub(crate) async fn click(&self, css: &str) {
        let element = self
            .find(css)
            .await
            .unwrap_or_else(|| panic!("no element {css} to click"));
        let path = format!("/element/{}/click", element.0);
        self.session(reqwest::Method::POST, &path, Some(json!({})))
            .await;
    }

    /// Clicks the first element `css` selects, which leads to another page, and
    /// waits until that page has loaded.
    pub(crate) async fn click_to_page(&self, css: &str) {
        self.run("window.leftBehind = true; return true;").await;
        self.click(css).await;
        let started = Instant::now();
        loop {
            // A script may fail while the page changes: that is "not yet".
            let url = format!("{}/execute/sync", self.session);
            let check = "return window.leftBehind !== true && document.readyState === 'complete';";
            let body = json!({ "script": check, "args": [] });
            let loaded = self.call(reqwest::Method::POST, &url, Some(body)).await;
            if loaded == Ok(Value::Bool(true)) {
                return;
            }
            assert!(
                started.elapsed() < CALL,
                "clicking {css} led to no new page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub(crate) async fn run(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.session(reqwest::Method::POST, "/execute/sync", Some(body))
            .await
    }

    /// The text of an open alert, prompt or confirm dialog, if one is open.
    pub(crate) async fn alert(&self) -> Option<String> {
        let url = format!("{}/alert/text", self.session);
        let value = self.call(reqwest::Method::GET, &url, None).await.ok()?;
        Some(value.as_str().unwrap_or_default().to_string())
    }

    /// Sets a cookie for the open page's origin.
    pub(crate) async fn set_cookie(&self, name: &str, value: &str) {
        let body = json!({ "cookie": { "name": name, "value": value, "path": "/" } });
        self.session(reqwest::Method::POST, "/cookie", Some(body))
            .await;
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let value = self
            .session(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = decode_base64(value.as_str().expect("base64 text"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot directory");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }

    /// Waits until `check` of the page's state holds, reading it again every 50 ms.
    pub(crate) async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !check().await {
            assert!(started.elapsed() < CALL, "the page never showed {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Drop cannot await: the session is ended with a plain blocking request,
        // bounded in time, which closes the browser.
        if let Some((host, path)) = self
            .session
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
        {
            if let Ok(addr) = host.parse() {
                if let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let request = format!(
                        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    if conn.write_all(request.as_bytes()).is_ok() {
                        let _ = conn.read_to_end(&mut Vec::new());
                    }
                }
            }
        }
        // Then the driver's whole process group, in case the browser stayed.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let keep = data.len().saturating_sub(1);
        for i in 0..keep {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn base64_decodes_what_it_should() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGk="), b"hi");
    assert_eq!(decode_base64("YWJj"), b"abc");
}
