//! A real browser for the page tests: Debian's Chromium, headless, driven over the DevTools
//! protocol (a WebSocket and JSON; the same client the tail tests use). Started with a new
//! profile and no background networking, stopped by its PID when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Browser {
    child: Child,
    profile: std::path::PathBuf,
    socket: Socket,
    next_id: u64,
    session: Option<String>,
}

/// What the tests give a page to load and run at most.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

impl Browser {
    /// Chromium from `JANUS_TEST_CHROMIUM` (the test command installs Debian's package).
    pub async fn launch() -> Browser {
        Self::launch_with(&[]).await
    }

    /// The same, with more command-line switches.
    pub async fn launch_with(extra: &[&str]) -> Browser {
        let bin = super::required_env("JANUS_TEST_CHROMIUM");
        let profile = super::temp_dir("chromium-profile");
        let mut child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        // Chromium writes the port it took to the profile when it listens.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let address = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("chromium did not open its DevTools port");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(address.as_str())
            .await
            .expect("DevTools connects");
        Browser {
            child,
            profile,
            socket,
            next_id: 0,
            session: None,
        }
    }

    /// One DevTools command; its result (events arriving meanwhile are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("DevTools send");
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("DevTools did not answer {method}"));
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if answer["id"] == json!(id) {
                if let Some(error) = answer.get("error") {
                    panic!("DevTools {method}: {error}");
                }
                return answer["result"].clone();
            }
        }
    }

    /// A new tab attached for commands, sending `headers` with every request it makes
    /// (credentials), in the light or dark colour scheme.
    pub async fn open(&mut self, url: &str, headers: &[(&str, &str)], dark: bool) {
        self.session = None;
        let target = self
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        self.session = attached["sessionId"].as_str().map(str::to_string);
        self.call("Page.enable", json!({})).await;
        self.call("Network.enable", json!({})).await;
        if !headers.is_empty() {
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| ((*k).to_string(), json!(v)))
                .collect();
            self.call("Network.setExtraHTTPHeaders", json!({"headers": headers}))
                .await;
        }
        let scheme = if dark { "dark" } else { "light" };
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete'").await;
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("page script {expression:?} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `condition` is true in the page; its last value otherwise, in the panic.
    pub async fn wait_for(&mut self, condition: &str) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            if self.eval(&format!("!!({condition})")).await == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let state = self
                    .eval("document.body ? document.body.dataset.state + ' ' + document.getElementById('error')?.textContent : 'no body'")
                    .await;
                panic!("the page never got to {condition:?} (state: {state})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the page's query to end (`data-state` done or error) and says which.
    pub async fn settled(&mut self) -> String {
        self.wait_for("['done','error'].includes(document.body.dataset.state)")
            .await;
        self.eval("document.body.dataset.state")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG of the page as shown.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("PNG")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
