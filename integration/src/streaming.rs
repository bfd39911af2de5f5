//! Client for the Kubernetes streaming protocol served by containerd's CRI streaming server
//! (the URLs returned by CRI Exec/Attach/PortForward), over WebSocket.
//!
//! Framing (k8s `wsstream` channel protocol, binary variant): every message starts with one byte,
//! the channel number, followed by the payload.
//! * exec/attach (`v4.channel.k8s.io`): 0 stdin, 1 stdout, 2 stderr, 3 error/status (a
//!   metav1.Status JSON when the command ends), 4 resize (`{"Width":w,"Height":h}`).
//! * portforward (`v4.channel.k8s.io`): per requested port i, channel 2i is data and 2i+1 is
//!   errors; the first message on each carries the port as a little-endian u16.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;

pub struct ChannelConn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub protocol: String,
}

impl ChannelConn {
    /// Open a WebSocket to a CRI streaming URL (`http://...` is turned into `ws://...`).
    pub async fn connect(url: &str, protocol: &str) -> Result<ChannelConn> {
        let ws_url = url
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1);
        let mut req = ws_url
            .as_str()
            .into_client_request()
            .context("building WebSocket request")?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse()?);
        let (ws, resp) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .context("WebSocket connect timed out")?
        .with_context(|| format!("WebSocket connect to {ws_url}"))?;
        let negotiated = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        anyhow::ensure!(
            negotiated == protocol,
            "server negotiated protocol {negotiated:?}, asked for {protocol:?}"
        );
        Ok(ChannelConn {
            ws,
            protocol: negotiated,
        })
    }

    pub async fn send(&mut self, channel: u8, data: &[u8]) -> Result<()> {
        let mut m = Vec::with_capacity(data.len() + 1);
        m.push(channel);
        m.extend_from_slice(data);
        self.ws
            .send(Message::binary(m))
            .await
            .context("WebSocket send")
    }

    /// Send a terminal size on the resize channel.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let j = serde_json::json!({ "Width": width, "Height": height }).to_string();
        self.send(RESIZE, j.as_bytes()).await
    }

    /// Next data message `(channel, payload)`; `None` when the server closed the connection.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Option<(u8, Vec<u8>)>> {
        loop {
            let m = tokio::time::timeout(timeout, self.ws.next())
                .await
                .map_err(|_| anyhow!("no WebSocket message within {timeout:?}"))?;
            match m {
                None => return Ok(None),
                Some(Err(e)) => {
                    use tokio_tungstenite::tungstenite::Error as E;
                    return match e {
                        E::ConnectionClosed | E::AlreadyClosed | E::Protocol(_) => Ok(None),
                        e => Err(anyhow!("WebSocket receive: {e}")),
                    };
                }
                Some(Ok(Message::Binary(b))) => {
                    if b.is_empty() {
                        continue;
                    }
                    return Ok(Some((b[0], b[1..].to_vec())));
                }
                Some(Ok(Message::Text(t))) => {
                    bail!("unexpected text message {t:?} (binary protocol)")
                }
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(_)) => continue, // ping/pong
            }
        }
    }

    /// Read until the server closes; returns everything received per channel.
    pub async fn collect(mut self, timeout: Duration) -> Result<BTreeMap<u8, Vec<u8>>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "stream not closed within {timeout:?}; got so far: {}",
                    show(&out)
                );
            }
            match self
                .recv(left)
                .await
                .with_context(|| format!("got so far: {}", show(&out)))?
            {
                None => return Ok(out),
                Some((ch, data)) => out.entry(ch).or_default().extend_from_slice(&data),
            }
        }
    }

    /// Read until `channel`'s accumulated data contains `needle`; returns all data per channel.
    pub async fn read_until(
        &mut self,
        channel: u8,
        needle: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<u8, Vec<u8>>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        loop {
            if out
                .get(&channel)
                .map(|d| String::from_utf8_lossy(d).contains(needle))
                .unwrap_or(false)
            {
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "{needle:?} not seen on channel {channel} within {timeout:?}; got: {}",
                    show(&out)
                );
            }
            match self
                .recv(left)
                .await
                .with_context(|| format!("waiting for {needle:?}; got: {}", show(&out)))?
            {
                None => bail!(
                    "stream closed before {needle:?} on channel {channel}; got: {}",
                    show(&out)
                ),
                Some((ch, data)) => out.entry(ch).or_default().extend_from_slice(&data),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Render per-channel data for error messages.
pub fn show(m: &BTreeMap<u8, Vec<u8>>) -> String {
    m.iter()
        .map(|(k, v)| format!("ch{k}={:?}", String::from_utf8_lossy(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The exit code from a v4 error-channel Status: 0 for Success, the ExitCode cause otherwise.
pub fn exit_code_from_status(status: &[u8]) -> Result<i32> {
    let v: serde_json::Value = serde_json::from_slice(status)
        .with_context(|| format!("status is not JSON: {:?}", String::from_utf8_lossy(status)))?;
    match v["status"].as_str() {
        Some("Success") => Ok(0),
        Some("Failure") => {
            let causes = v["details"]["causes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for c in causes {
                if c["reason"] == "ExitCode" {
                    return c["message"]
                        .as_str()
                        .and_then(|m| m.parse().ok())
                        .ok_or_else(|| anyhow!("bad ExitCode cause in {v}"));
                }
            }
            bail!("failure status without exit code: {v}")
        }
        _ => bail!("unexpected status {v}"),
    }
}
