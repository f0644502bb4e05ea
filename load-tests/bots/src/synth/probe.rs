//! Counters `synth` reads outside its own bots, before and after a run, to tell the load it
//! caused from what the server and the host saw: the SFU nodes' `/metrics`, CPU time from
//! `/proc/PID/stat` and the kernel's UDP receive errors. Every reader returns `None` rather
//! than failing, so a node or counter that is missing only drops its row from the report.

use std::time::Duration;

use crate::{http_get, prometheus_value};

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the ')' field 3 (state) is index 0; utime is field 14, stime 15.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / clock_ticks())
}

/// Machine-wide UDP receive errors (InErrors, RcvbufErrors) from /proc/net/snmp: datagrams
/// the kernel dropped because a socket's buffer was full (bots and SFU share the host).
pub fn udp_kernel_errors() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp: "));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |n: &str| -> Option<u64> {
        values
            .get(names.iter().position(|x| *x == n)?)?
            .parse()
            .ok()
    };
    Some((get("InErrors")?, get("RcvbufErrors")?))
}

fn clock_ticks() -> f64 {
    // _SC_CLK_TCK is 100 on every Linux this runs on; avoid a libc dependency for it.
    100.0
}

pub const METRICS: [&str; 8] = [
    "consult_rtp_packets_in_total",
    "consult_rtp_packets_out_total",
    "consult_rtp_bytes_in_total",
    "consult_rtp_bytes_out_total",
    "consult_udp_send_dropped_total",
    "consult_udp_recv_dropped_total",
    "consult_keyframe_requests_sent_total",
    "consult_nacks_received_total",
];

async fn read_metrics(addr: &str) -> Option<Vec<Option<f64>>> {
    let text = http_get(addr, "/metrics").await.ok()?;
    Some(METRICS.iter().map(|m| prometheus_value(&text, m)).collect())
}

/// Every node's counters (None for a node that does not answer, e.g. one killed meanwhile).
pub async fn read_all_metrics(addrs: &[String]) -> Vec<Option<Vec<Option<f64>>>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        // A node that hangs (rather than refuses) must not hold up the report.
        let m = tokio::time::timeout(Duration::from_secs(2), read_metrics(a)).await;
        out.push(m.ok().flatten());
    }
    out
}
