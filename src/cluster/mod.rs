//! Several nodes, one directory: each node registers in Redis with a heartbeat, and each
//! consult is placed on one node, the least loaded when it starts (`directory`). A join that
//! reaches another node is answered with `redirect` to the consult's node (signaling/
//! PROTOCOL.md), so media and signaling go straight to the node that forwards them.
//!
//! Redis is the only thing the nodes share live; a node that loses it refuses new joins with
//! `server_busy` (clients retry by themselves) while its running consults go on.

mod directory;
mod redis;
pub mod resp;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use directory::{DirectoryError, NodeInfo, NodeLoad, Placement};
pub use redis::{RedisError, RedisUrl};

use directory::Directory;

/// A heartbeat every 500 ms and a TTL of 2 s: a node that dies is out of the directory (and
/// its consults placed again on the next join) within 2 s, and up to three late heartbeats in
/// a row are not a death. Four small scripts a second per node cost Redis nothing.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
pub const NODE_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis cannot be reached, or refused us (a wrong password), at start.
    #[error("cluster directory: {0}")]
    Connect(#[from] RedisError),
}

/// This node's membership of the cluster.
pub struct Cluster {
    dir: Directory,
}

impl Cluster {
    /// Connects to Redis (so a wrong URL or password stops the start with a clear error).
    /// `advertise_url` is the node's base URL (`http(s)://host:port`) as clients reach it;
    /// `media` its UDP candidate address (shown to operators).
    pub async fn connect(
        url: RedisUrl,
        node_id: String,
        advertise_url: &str,
        media: String,
    ) -> Result<Arc<Self>, ClusterError> {
        let redis = redis::Redis::connect(url).await?;
        let dir = Directory::new(
            redis,
            node_id,
            signaling_url(advertise_url),
            media,
            NODE_TTL,
        );
        Ok(Arc::new(Cluster { dir }))
    }

    pub fn node_id(&self) -> &str {
        self.dir.node()
    }

    /// This node's signaling WebSocket as other nodes redirect to it.
    pub fn url(&self) -> &str {
        self.dir.url()
    }

    pub fn redis_url(&self) -> &RedisUrl {
        self.dir.redis().url()
    }

    pub async fn place(&self, room: &str) -> Result<Placement, DirectoryError> {
        self.dir.place(room).await
    }

    pub async fn lookup(&self, room: &str) -> Result<Option<Placement>, DirectoryError> {
        self.dir.lookup(room).await
    }

    pub async fn release(&self, room: &str) -> Result<(), DirectoryError> {
        self.dir.release(room).await
    }

    /// Returns the rooms running here that another live node holds now: hand them over.
    pub async fn heartbeat(
        &self,
        load: &NodeLoad,
        rooms: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        self.dir.heartbeat(load, rooms).await
    }

    pub async fn leave(&self) -> Result<(), DirectoryError> {
        self.dir.leave().await
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, DirectoryError> {
        self.dir.nodes().await
    }
}

/// Whether new consults may be placed on this node. A draining, saturated or full node keeps
/// its consults but is given no new ones (their joins would only be refused).
pub fn accepting(draining: bool, saturated: bool, participants: u64, cap: Option<usize>) -> bool {
    let full = cap.is_some_and(|cap| participants >= cap as u64);
    !draining && !saturated && !full
}

/// `http://h:p` → `ws://h:p/ws`, `https://h` → `wss://h/ws`.
pub fn signaling_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}/ws"),
        Some((_, rest)) => format!("ws://{rest}/ws"),
        None => format!("ws://{base}/ws"),
    }
}

/// The default node id: the host name and the HTTP port (unique per machine and port).
pub fn default_node_id(http_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{http_port}")
}

/// What the heartbeat reports, read from the process each second.
pub struct LoadProbe {
    last: Option<(Instant, u64, f64)>,
}

impl LoadProbe {
    pub fn new() -> Self {
        LoadProbe { last: None }
    }

    /// Bitrate and CPU since the previous call, from the bytes sent so far and the process
    /// CPU seconds so far.
    pub fn sample(&mut self, now: Instant, bytes_out: u64, cpu_seconds: Option<f64>) -> (u64, f64) {
        let cpu_now = cpu_seconds.unwrap_or(0.0);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let result = match self.last {
            Some((at, bytes, cpu)) => {
                let secs = now.saturating_duration_since(at).as_secs_f64().max(1e-3);
                let bps = (bytes_out.saturating_sub(bytes) as f64 * 8.0 / secs) as u64;
                let cpu = ((cpu_now - cpu).max(0.0) / secs / cores).min(1.0);
                (bps, cpu)
            }
            None => (0, 0.0),
        };
        self.last = Some((now, bytes_out, cpu_now));
        result
    }
}

impl Default for LoadProbe {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepting_new_consults() {
        let cases = [
            (false, false, 10, None, true),
            (false, false, 89, Some(90), true),
            (false, false, 90, Some(90), false),
            (true, false, 0, None, false),
            (false, true, 0, Some(90), false),
        ];
        for (draining, saturated, participants, cap, want) in cases {
            assert_eq!(
                accepting(draining, saturated, participants, cap),
                want,
                "{draining} {saturated} {participants} {cap:?}"
            );
        }
    }

    #[test]
    fn signaling_urls_follow_the_scheme() {
        let cases = [
            ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/ws"),
            ("https://n1.consult.vn/", "wss://n1.consult.vn/ws"),
            ("n2:80", "ws://n2:80/ws"),
        ];
        for (base, want) in cases {
            assert_eq!(signaling_url(base), want);
        }
    }

    #[test]
    fn load_probe_reports_rates_since_the_last_sample() {
        let mut p = LoadProbe::new();
        let t0 = Instant::now();
        assert_eq!(p.sample(t0, 1000, Some(1.0)), (0, 0.0));
        let (bps, cpu) = p.sample(t0 + Duration::from_secs(2), 251_000, Some(1.5));
        assert_eq!(bps, 1_000_000);
        assert!(cpu > 0.0 && cpu <= 0.25 + 1e-9, "{cpu}");
    }
}
