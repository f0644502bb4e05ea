//! Synthetic WebRTC load bots for the consult SFU.
//!
//! Each bot is a str0m `Rtc` in RTP mode that joins through the real signaling (JSON over
//! WebSocket), publishes Opus-like audio and simulcast VP8 (three rids) with valid RFC 7741
//! descriptors, and subscribes to everyone else like a browser: str0m sends the receiver
//! reports, NACKs and transport-wide feedback. Every payload carries a send stamp
//! ([`stamp`]) so receivers in the same process measure one-way latency and loss.
//!
//! Pure parts ([`vp8`], [`stamp`], [`hist`], and for several nodes [`cluster`] and [`rejoin`])
//! have unit tests; [`room`] is the IO shell that drives all bots of one room from one tokio
//! task, [`media`] what one bot sends and counts, `ours` and `janus` the two signaling dialects
//! (ours, and Janus VideoRoom for the baseline).

// The run report's `json!` (in `synth::report`) nests deeper than the default limit.
#![recursion_limit = "256"]

pub mod cluster;
pub mod hist;
mod janus;
pub mod media;
mod ours;
pub mod rejoin;
pub mod room;
pub mod rxtime;
pub mod stamp;
pub mod synth;
pub mod vp8;

/// Reads `GET path` from an HTTP/1.1 server, returning the body (no TLS, no chunking
/// support needed for the SFU's small responses, but chunked bodies are decoded anyway).
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP header end"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        anyhow::bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sums the samples of one Prometheus metric (all label sets) in text exposition.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(r) = rest.strip_prefix(' ') {
            r
        } else if rest.starts_with('{') {
            match rest.rsplit_once("} ") {
                Some((_, v)) => v,
                None => continue,
            }
        } else {
            continue;
        };
        if let Ok(v) = value.trim().parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_parsing() {
        let text = "# HELP a x\n# TYPE a counter\na_total 12\na_total_other 5\nb{code=\"x\"} 2\nb{code=\"y\"} 3\n";
        assert_eq!(prometheus_value(text, "a_total"), Some(12.0));
        assert_eq!(prometheus_value(text, "b"), Some(5.0));
        assert_eq!(prometheus_value(text, "c"), None);
    }

    #[test]
    fn chunked() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
