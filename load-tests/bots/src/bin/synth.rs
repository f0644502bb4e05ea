//! `synth`: synthetic WebRTC load against the consult SFU (or anything speaking the same
//! signaling subset). See `load-tests/bots/README.md`.

#![recursion_limit = "256"]

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use consult_bots::cluster::{self, InviteRoom};
use consult_bots::rejoin::{median, unix_ms};
use consult_bots::room::{self, BotSummary, Config, Shared, Target};
use consult_bots::{http_get, prometheus_value, stamp};
use serde_json::json;

const USAGE: &str =
    "usage: synth --server http://HOST:PORT[,http://HOST2:PORT2...] --rooms M [--per-room 3]
             --duration SECS [--ramp-per-sec R] [--json OUT.json] [--simulcast true|false]
             [--dynacast true|false] [--expect-media] [--threads N] [--sfu-pid PID]
             [--bind-ip IP] [--rejoin] [--join-together] [--invites FILE]
       synth --target janus --janus-url ws://HOST:PORT --rooms M ... (same options)

  Joins M rooms x K participants through the signaling at ws://HOST:PORT/ws, each publishing
  Opus-like audio and VP8 simulcast (q/h/f at 150/400/1200 kbit/s) and receiving the others.
  --target janus   the same bots against a Janus VideoRoom (Janus API over its WebSocket
                   transport at --janus-url): no /metrics deltas, no dynacast
  --ramp-per-sec   joins per second over all rooms (default: all at once)
  --dynacast       honor publish_layers like the web client (default true)
  --expect-media   exit 1 unless every participant received audio and video from every other
                   participant of its room
  --threads        tokio worker threads for the bots (default 2)
  --sfu-pid        also report that process's CPU use over the run (from /proc/PID/stat)
  --bind-ip        the address the bots' UDP sockets bind to (default 127.0.0.1)
Several SFU nodes (ours only):
  --server A,B,C   bots spread their first connection round-robin over the nodes (bot i
                   starts on node i mod N) and try the next on a failed connection; a join
                   follows `redirect` (at most 5 hops); the report says which node each room
                   ended on
  --rejoin         a bot whose signaling socket closes (its node died) drops its peer
                   connection and joins afresh from the node list, publishes and subscribes
                   again; reports the longest gap in received media and the time to rejoin
  --join-together  all participants of a room join at the same moment (racing joins)
                   instead of each after the previous one's `joined`
  --invites FILE   join by invite: one consult a line, `label<TAB>token1<TAB>token2...`, one
                   token per participant (clinic first); --rooms defaults to the line count";

struct Args {
    target: Target,
    server: String,
    rooms: usize,
    per_room: usize,
    duration: f64,
    ramp: f64,
    json: Option<String>,
    simulcast: bool,
    dynacast: bool,
    expect_media: bool,
    threads: usize,
    sfu_pid: Option<u32>,
    bind_ip: std::net::IpAddr,
    rejoin: bool,
    join_together: bool,
    invites: Option<String>,
}

fn parse_bool(s: &str) -> Result<bool> {
    match s {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("expected true or false, got {s:?}"),
    }
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        target: Target::Ours,
        server: String::new(),
        rooms: 0,
        per_room: 3,
        duration: 0.0,
        ramp: 0.0,
        json: None,
        simulcast: true,
        dynacast: true,
        expect_media: false,
        threads: 2,
        sfu_pid: None,
        bind_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        rejoin: false,
        join_together: false,
        invites: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (flag, None),
        };
        // Switches: bare, or with =true/=false.
        let switch = match flag.as_str() {
            "--expect-media" => Some(&mut a.expect_media),
            "--rejoin" => Some(&mut a.rejoin),
            "--join-together" => Some(&mut a.join_together),
            _ => None,
        };
        if let Some(on) = switch {
            *on = inline
                .as_deref()
                .map(parse_bool)
                .transpose()?
                .unwrap_or(true);
            continue;
        }
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?,
        };
        match flag.as_str() {
            "--server" | "--janus-url" => a.server = value,
            "--target" => {
                a.target = match value.as_str() {
                    "ours" | "consult-sfu" | "sfu" => Target::Ours,
                    "janus" => Target::Janus,
                    _ => bail!("--target must be ours or janus, got {value:?}"),
                }
            }
            "--rooms" => a.rooms = value.parse().context("--rooms")?,
            "--per-room" => a.per_room = value.parse().context("--per-room")?,
            "--duration" => a.duration = value.parse().context("--duration")?,
            "--ramp-per-sec" => a.ramp = value.parse().context("--ramp-per-sec")?,
            "--json" => a.json = Some(value),
            "--simulcast" => a.simulcast = parse_bool(&value)?,
            "--dynacast" => a.dynacast = parse_bool(&value)?,
            "--threads" => a.threads = value.parse().context("--threads")?,
            "--sfu-pid" => a.sfu_pid = Some(value.parse().context("--sfu-pid")?),
            "--bind-ip" => a.bind_ip = value.parse().context("--bind-ip")?,
            "--invites" => a.invites = Some(value),
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    if a.target == Target::Janus
        && (a.rejoin || a.invites.is_some() || a.join_together || a.server.contains(','))
    {
        bail!("--rejoin, --join-together, --invites and a node list are for our signaling only");
    }
    // With invites the file says how many consults there are (--rooms 0: all of them).
    if a.server.is_empty() || (a.rooms == 0 && a.invites.is_none()) || a.duration <= 0.0 {
        bail!("--server (or --janus-url), --rooms and --duration are required\n{USAGE}");
    }
    if !(2..=8).contains(&a.per_room) {
        bail!("--per-room must be 2 to 8 (the server's room limit)");
    }
    if a.threads == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(a)
}

/// The invites file, cut to `rooms` consults (all of them if `rooms` is 0).
fn load_invites(path: &str, rooms: usize, per_room: usize) -> Result<Vec<InviteRoom>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    let mut all = cluster::parse_invites(&text, per_room)
        .map_err(|e| anyhow::anyhow!("--invites {path}: {e}"))?;
    if rooms != 0 {
        if rooms > all.len() {
            bail!(
                "--rooms {rooms} but {path} lists only {} consults",
                all.len()
            );
        }
        all.truncate(rooms);
    }
    Ok(all)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str) -> Option<f64> {
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
fn udp_kernel_errors() -> Option<(u64, u64)> {
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

const METRICS: [&str; 8] = [
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
async fn read_all_metrics(addrs: &[String]) -> Vec<Option<Vec<Option<f64>>>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        // A node that hangs (rather than refuses) must not hold up the report.
        let m = tokio::time::timeout(Duration::from_secs(2), read_metrics(a)).await;
        out.push(m.ok().flatten());
    }
    out
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("synth: {e:#}");
            2
        }
    };
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(code);
}

async fn run(args: Args) -> Result<i32> {
    str0m::crypto::from_feature_flags().install_process_default();
    stamp::epoch();
    let addrs =
        cluster::parse_server_list(&args.server).map_err(|e| anyhow::anyhow!("--server: {e}"))?;
    // Anchors wall-clock times of outages (JSON) to the monotonic clock now.
    unix_ms(Instant::now());
    let invites = match &args.invites {
        Some(path) => Some(load_invites(path, args.rooms, args.per_room)?),
        None => None,
    };
    let rooms = invites.as_ref().map_or(args.rooms, Vec::len);
    // Janus has no Prometheus endpoint: its counters are skipped.
    let has_metrics = args.target == Target::Ours;
    let metrics_before = if has_metrics {
        read_all_metrics(&addrs).await
    } else {
        Vec::new()
    };
    let sfu_pid = args.sfu_pid.map(|p| p.to_string());
    let sfu_cpu_before = sfu_pid.as_deref().and_then(cpu_seconds);
    let self_cpu_before = cpu_seconds("self");
    let udp_errors_before = udp_kernel_errors();

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let cfg = Arc::new(Config {
        target: args.target,
        ws_urls: addrs
            .iter()
            .map(|a| match args.target {
                Target::Ours => format!("ws://{a}/ws"),
                Target::Janus => format!("ws://{a}"),
            })
            .collect(),
        rooms,
        per_room: args.per_room,
        simulcast: args.simulcast,
        dynacast: args.dynacast,
        ramp_per_sec: args.ramp,
        start,
        end,
        room_prefix: format!("synth-{}-", std::process::id()),
        // Numeric room ids, distinct between runs against one Janus.
        janus_room_base: (std::process::id() as u64 % 100_000) * 10_000 + 1,
        bind_ip: args.bind_ip,
        rejoin: args.rejoin,
        join_together: args.join_together,
        invites: invites.map(Into::into),
    });
    let shared = Arc::new(Shared::default());
    let total = rooms * args.per_room;
    eprintln!(
        "synth: {} rooms x {} = {total} participants against {}{} for {} s{}",
        rooms,
        args.per_room,
        if has_metrics { "" } else { "Janus at " },
        addrs.join(","),
        args.duration,
        if args.ramp > 0.0 {
            format!(", ramp {} joins/s", args.ramp)
        } else {
            String::new()
        }
    );

    let handles: Vec<_> = (0..rooms)
        .map(|r| tokio::spawn(room::run_room(r, cfg.clone(), shared.clone())))
        .collect();

    // Progress every 5 s.
    let mut last = (Instant::now(), 0u64, 0u64);
    let mut all_connected_at: Option<Instant> = None;
    // (when, packets sent, packets received, payload bytes received)
    let mut steady_from: Option<(Instant, u64, u64, u64)> = None;
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(5)).into(),
        Duration::from_secs(5),
    );
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= end { break; }
                let now = Instant::now();
                let sent = shared.sent_packets.load(Relaxed);
                let recv = shared.received_packets.load(Relaxed);
                let dt = (now - last.0).as_secs_f64();
                let h = std::mem::take(&mut *shared.hist_interval.lock().unwrap());
                eprintln!(
                    "t={:>4.0}s joined {}/{total} connected {} failed {} | sent {:.0} pkt/s recv {:.0} pkt/s | latency p50 {} p99 {} ms",
                    (now - start).as_secs_f64(),
                    shared.joined.load(Relaxed),
                    shared.connected.load(Relaxed),
                    shared.failed.load(Relaxed),
                    (sent - last.1) as f64 / dt,
                    (recv - last.2) as f64 / dt,
                    ms(h.percentile(50.0).map(|u| u as f64 / 1e3)),
                    ms(h.percentile(99.0).map(|u| u as f64 / 1e3)),
                );
                last = (now, sent, recv);
            }
            _ = poll.tick() => {
                if Instant::now() >= end { break; }
                if all_connected_at.is_none() && shared.connected.load(Relaxed) as usize >= total {
                    let now = Instant::now();
                    all_connected_at = Some(now);
                    // Steady state: from 2 s after the last bot connected (layers settled).
                    steady_from = None;
                    let _ = now;
                }
                if let (Some(t), None) = (all_connected_at, steady_from) {
                    if Instant::now() >= t + Duration::from_secs(2) {
                        steady_from = Some((Instant::now(), shared.sent_packets.load(Relaxed), shared.received_packets.load(Relaxed), shared.received_bytes.load(Relaxed)));
                    }
                }
            }
        }
    }
    let steady_to = (
        Instant::now(),
        shared.sent_packets.load(Relaxed),
        shared.received_packets.load(Relaxed),
        shared.received_bytes.load(Relaxed),
    );
    let sfu_cpu_end = sfu_pid.as_deref().and_then(cpu_seconds);
    let self_cpu_end = cpu_seconds("self");
    let udp_errors = match (udp_errors_before, udp_kernel_errors()) {
        (Some(a), Some(b)) => Some((b.0 - a.0, b.1 - a.1)),
        _ => None,
    };
    let wall = (Instant::now() - start).as_secs_f64();

    let mut summaries: Vec<BotSummary> = Vec::new();
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(10), h).await {
            Ok(Ok(s)) => summaries.extend(s),
            Ok(Err(e)) => shared.error(format!("room task panicked: {e}")),
            Err(_) => shared.error("room task did not stop within 10 s".into()),
        }
    }
    // Let the server see the leaves before reading its counters.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics_after = if has_metrics {
        read_all_metrics(&addrs).await
    } else {
        Vec::new()
    };

    // ---- report ----
    let s = &*shared;
    let sent = s.sent_packets.load(Relaxed);
    let recv = s.received_packets.load(Relaxed);
    let rtp_exp = s.rtp_expected.load(Relaxed);
    let rtp_rec = s.rtp_received.load(Relaxed);
    let loss = if rtp_exp > 0 {
        100.0 * (rtp_exp - rtp_rec) as f64 / rtp_exp as f64
    } else {
        0.0
    };
    let a_exp = s.audio_expected.load(Relaxed);
    let a_rec = s.audio_received.load(Relaxed);
    let audio_loss = if a_exp > 0 {
        100.0 * (a_exp - a_rec) as f64 / a_exp as f64
    } else {
        0.0
    };
    let hist = s.hist.lock().unwrap().clone();
    let lat = |p: f64| hist.percentile(p).map(|u| u as f64 / 1e3);
    let hist_audio = s.hist_audio.lock().unwrap().clone();
    let hist_video = s.hist_video.lock().unwrap().clone();
    let lat_a = |p: f64| hist_audio.percentile(p).map(|u| u as f64 / 1e3);
    let lat_v = |p: f64| hist_video.percentile(p).map(|u| u as f64 / 1e3);
    let by_stream: Vec<u64> = s
        .received_by_stream
        .iter()
        .map(|x| x.load(Relaxed))
        .collect();
    let mut join_ms = s.join_ms.lock().unwrap().clone();
    join_ms.sort_by(f64::total_cmp);
    let mut connect_ms = s.connect_ms.lock().unwrap().clone();
    connect_ms.sort_by(f64::total_cmp);
    let mut media_ms = s.first_media_ms.lock().unwrap().clone();
    media_ms.sort_by(f64::total_cmp);
    let (steady_secs, steady_sent_pps, steady_recv_pps, steady_recv_bps) = match steady_from {
        Some((t, a, b, c)) if steady_to.0 > t => {
            let d = (steady_to.0 - t).as_secs_f64();
            (
                d,
                (steady_to.1 - a) as f64 / d,
                (steady_to.2 - b) as f64 / d,
                (steady_to.3 - c) as f64 * 8.0 / d,
            )
        }
        _ => (0.0, 0.0, 0.0, 0.0),
    };
    // Summed over the nodes that answered before and after (a killed node drops out).
    let answered: Vec<usize> = (0..addrs.len())
        .filter(|&n| {
            metrics_before.get(n).is_some_and(Option::is_some)
                && metrics_after.get(n).is_some_and(Option::is_some)
        })
        .collect();
    let delta = |i: usize| -> Option<f64> {
        let mut sum = None;
        for &n in &answered {
            let before = metrics_before[n].as_ref()?;
            let after = metrics_after[n].as_ref()?;
            let a = before.get(i).copied().flatten().unwrap_or(0.0);
            let b = after.get(i).copied().flatten()?;
            *sum.get_or_insert(0.0) += b - a;
        }
        sum
    };
    let sfu_cpu = match (sfu_cpu_before, sfu_cpu_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let self_cpu = match (self_cpu_before, self_cpu_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    // --expect-media
    let mut missing: Vec<String> = Vec::new();
    for b in &summaries {
        if !b.connected {
            missing.push(format!(
                "participant {} ({}, room {}) never connected media",
                b.sender, b.role, b.room
            ));
            continue;
        }
        for p in &b.peers {
            let (a, v) = b.from.get(p).copied().unwrap_or((0, 0));
            if a < 10 || v < 10 {
                missing.push(format!(
                    "participant {} ({}, room {}) got {a} audio / {v} video packets from {p}",
                    b.sender, b.role, b.room
                ));
            }
        }
        // With --rejoin, media before the outage is not enough: every peer must be back.
        if args.rejoin && b.recovery.unrecovered() > 0 {
            missing.push(format!(
                "participant {} ({}, room {}) lost its node and did not get media from every other participant again",
                b.sender, b.role, b.room
            ));
        }
    }

    // Several nodes: where each room ended (every participant's last node).
    let mut by_room: std::collections::BTreeMap<usize, Vec<&BotSummary>> = Default::default();
    for b in &summaries {
        by_room.entry(b.room).or_default().push(b);
    }
    let room_nodes: Vec<(String, Option<String>, Vec<Option<String>>)> = by_room
        .values()
        .map(|bots| {
            let nodes: Vec<Option<&str>> = bots.iter().map(|b| b.node.as_deref()).collect();
            (
                bots[0].room_name.clone(),
                cluster::room_node(&nodes).map(str::to_string),
                bots.iter().map(|b| b.node.clone()).collect(),
            )
        })
        .collect();
    let per_node = cluster::rooms_per_node(room_nodes.iter().map(|r| r.1.as_deref()));
    // Rooms that did not end whole on one node (split, or some participant never joined).
    let split = rooms - room_nodes.iter().filter(|r| r.1.is_some()).count();
    let cluster_json = json!({
        "urls": cfg.ws_urls.iter().map(|u| cluster::canonical_node(u)).collect::<Vec<_>>(),
        "rooms_per_node": per_node,
        "rooms_not_on_one_node": split,
        "redirects": s.redirects.load(Relaxed),
        "connect_failures": s.connect_failures.load(Relaxed),
        "rooms": room_nodes.iter().map(|(name, node, bots)| json!({"room": name, "node": node, "bots": bots})).collect::<Vec<_>>(),
    });

    // --rejoin: per bot, its longest media gap and rejoin time (ms).
    let with_outages: Vec<&BotSummary> = summaries
        .iter()
        .filter(|b| !b.recovery.outages.is_empty())
        .collect();
    let mut gaps: Vec<f64> = with_outages
        .iter()
        .filter_map(|b| b.recovery.max_gap())
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let mut rejoin_times: Vec<f64> = with_outages
        .iter()
        .filter_map(|b| b.recovery.max_rejoin())
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let gap_max = gaps.iter().copied().reduce(f64::max);
    let gap_median = median(&mut gaps);
    let rejoin_max = rejoin_times.iter().copied().reduce(f64::max);
    let rejoin_median = median(&mut rejoin_times);
    let outages: usize = with_outages.iter().map(|b| b.recovery.outages.len()).sum();
    let unrecovered: usize = with_outages.iter().map(|b| b.recovery.unrecovered()).sum();
    let rejoin_json = args.rejoin.then(|| {
        let ms_of = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        json!({
            "rejoins_started": s.rejoins.load(Relaxed),
            "bots_with_outages": with_outages.len(),
            "outages": outages,
            "unrecovered": unrecovered,
            "gap_ms": {"max": gap_max, "median": gap_median},
            "rejoin_ms": {"max": rejoin_max, "median": rejoin_median},
            "bots": with_outages.iter().map(|b| json!({
                "sender": b.sender,
                "room": b.room_name,
                "role": b.role,
                "node": b.node,
                "outages": b.recovery.outages.iter().map(|o| json!({
                    "lost_at_unix_ms": unix_ms(o.lost_at),
                    "last_media_before_unix_ms": o.last_before.map(unix_ms),
                    "joined_unix_ms": o.joined_at.map(unix_ms),
                    "first_media_unix_ms": o.first_media.map(unix_ms),
                    "all_peers_unix_ms": o.all_peers.map(unix_ms),
                    "gap_ms": ms_of(o.media_gap()),
                    "rejoin_ms": ms_of(o.rejoin_time()),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    });

    println!();
    println!("| metric | value |");
    println!("| --- | --- |");
    println!(
        "| target | {} |",
        if has_metrics {
            "our signaling"
        } else {
            "Janus VideoRoom"
        }
    );
    println!("| rooms x per room | {} x {} |", rooms, args.per_room);
    println!(
        "| participants joined | {} / {total} (failed {}) |",
        s.joined.load(Relaxed),
        s.failed.load(Relaxed)
    );
    println!("| media connected | {} |", s.connected.load(Relaxed));
    println!(
        "| join time p50 / p95 (ms) | {} / {} |",
        ms(pct(&join_ms, 50.0)),
        ms(pct(&join_ms, 95.0))
    );
    println!(
        "| join to ICE+DTLS connected p50 / p95 (ms) | {} / {} |",
        ms(pct(&connect_ms, 50.0)),
        ms(pct(&connect_ms, 95.0))
    );
    println!(
        "| join to first media p50 / p95 (ms) | {} / {} |",
        ms(pct(&media_ms, 50.0)),
        ms(pct(&media_ms, 95.0))
    );
    println!(
        "| packets sent (audio / video) | {sent} ({} / {}) |",
        s.sent_audio.load(Relaxed),
        s.sent_video.load(Relaxed)
    );
    println!(
        "| packets received (audio / video) | {recv} ({} / {}) |",
        s.received_audio.load(Relaxed),
        s.received_video.load(Relaxed)
    );
    println!("| steady-state send / receive (pkt/s, over {steady_secs:.1} s) | {steady_sent_pps:.0} / {steady_recv_pps:.0} |");
    println!(
        "| loss, RTP sequence gaps at receivers | {loss:.3} % ({} of {rtp_exp}) |",
        rtp_exp - rtp_rec
    );
    println!(
        "| loss, audio end to end (sender counters) | {audio_loss:.3} % ({} of {a_exp}) |",
        a_exp - a_rec
    );
    println!(
        "| forwarding latency p50 / p99 / max (ms) | {} / {} / {} |",
        ms(lat(50.0)),
        ms(lat(99.0)),
        ms(Some(hist.max_us() as f64 / 1e3))
    );
    println!(
        "| latency audio p50 / p99, video p50 / p99 (ms) | {} / {}, {} / {} |",
        ms(lat_a(50.0)),
        ms(lat_a(99.0)),
        ms(lat_v(50.0)),
        ms(lat_v(99.0))
    );
    println!(
        "| video received by layer q / h / f (packets) | {} / {} / {} |",
        by_stream[1], by_stream[2], by_stream[3]
    );
    println!(
        "| keyframes sent / keyframe requests received | {} / {} |",
        s.keyframes_sent.load(Relaxed),
        s.keyframe_requests.load(Relaxed)
    );
    println!(
        "| server offers answered / layer_changed / publish_layers | {} / {} / {} |",
        s.server_offers.load(Relaxed),
        s.layer_changes.load(Relaxed),
        s.publish_layers.load(Relaxed)
    );
    println!(
        "| signaling errors / udp send errors | {} / {} |",
        s.signaling_errors.load(Relaxed),
        s.udp_send_errors.load(Relaxed)
    );
    if addrs.len() > 1 || s.redirects.load(Relaxed) > 0 {
        let list: Vec<String> = per_node.iter().map(|(n, c)| format!("{n} {c}")).collect();
        println!(
            "| rooms per node (where they ended) | {} |",
            list.join(", ")
        );
        println!("| rooms not whole on one node | {split} |");
        // Per room, the node (host:port) it ended on, or every participant's node if split.
        let short = |u: &str| {
            u.trim_start_matches("ws://")
                .trim_end_matches("/ws")
                .to_string()
        };
        let each: Vec<String> = room_nodes
            .iter()
            .map(|(name, node, bots)| match node {
                Some(n) => format!("{name} {}", short(n)),
                None => {
                    let b: Vec<String> = bots
                        .iter()
                        .map(|n| n.as_deref().map_or("-".into(), short))
                        .collect();
                    format!("{name} split ({})", b.join(" "))
                }
            })
            .collect();
        println!("| room: node it ended on | {} |", each.join(", "));
        println!(
            "| redirects followed / node connections failed | {} / {} |",
            s.redirects.load(Relaxed),
            s.connect_failures.load(Relaxed)
        );
    }
    if args.rejoin {
        println!(
            "| rejoin: bots with outages / outages / not recovered | {} / {outages} / {unrecovered} |",
            with_outages.len()
        );
        println!(
            "| rejoin: longest media gap per bot, max / median (ms) | {} / {} |",
            ms(gap_max),
            ms(gap_median)
        );
        println!(
            "| rejoin: time to rejoin per bot, max / median (ms) | {} / {} |",
            ms(rejoin_max),
            ms(rejoin_median)
        );
    }
    if !answered.is_empty() {
        if addrs.len() > 1 {
            println!(
                "| SFU /metrics summed over | {} of {} nodes |",
                answered.len(),
                addrs.len()
            );
        }
        println!(
            "| SFU rtp packets in / out (metrics delta) | {} / {} |",
            ms(delta(0)).trim_end_matches(".0"),
            ms(delta(1)).trim_end_matches(".0")
        );
        println!(
            "| SFU udp send / recv dropped (delta) | {} / {} |",
            ms(delta(4)).trim_end_matches(".0"),
            ms(delta(5)).trim_end_matches(".0")
        );
        println!(
            "| SFU PLIs sent / NACKs received (delta) | {} / {} |",
            ms(delta(6)).trim_end_matches(".0"),
            ms(delta(7)).trim_end_matches(".0")
        );
    } else if has_metrics {
        println!("| SFU /metrics | not available |");
    }
    if let Some((e, b)) = udp_errors {
        println!("| kernel UDP receive errors / buffer overflows (host-wide delta) | {e} / {b} |");
    }
    if let Some(c) = sfu_cpu {
        println!(
            "| SFU CPU (pid {}) | {c:.2} s = {:.1} % of one core |",
            args.sfu_pid.unwrap(),
            100.0 * c / wall
        );
    }
    if let Some(c) = self_cpu {
        println!(
            "| synth CPU | {c:.2} s = {:.1} % of one core |",
            100.0 * c / wall
        );
    }
    let slow = s.slow.lock().unwrap().clone();
    let slow_count = s.slow_count.load(Relaxed);
    if slow_count > 0 {
        let when: Vec<String> = slow
            .iter()
            .take(8)
            .map(|(us, at, st)| {
                format!(
                    "{:.0} ms at t={at:.1}s ({})",
                    *us as f64 / 1e3,
                    ["audio", "q", "h", "f"][*st as usize]
                )
            })
            .collect();
        println!(
            "| packets over 100 ms | {slow_count}: {}{} |",
            when.join(", "),
            if slow.len() > 8 { ", ..." } else { "" }
        );
    }
    let errors = s.errors.lock().unwrap().clone();
    for e in &errors {
        eprintln!("synth: {e}");
    }

    if let Some(path) = &args.json {
        let j = json!({
            "target": if has_metrics { "ours" } else { "janus" },
            "rooms": rooms,
            "per_room": args.per_room,
            "duration_s": args.duration,
            "simulcast": args.simulcast,
            "dynacast": args.dynacast,
            "participants": total,
            "joined": s.joined.load(Relaxed),
            "connected": s.connected.load(Relaxed),
            "failed": s.failed.load(Relaxed),
            "join_ms": {"p50": pct(&join_ms, 50.0), "p95": pct(&join_ms, 95.0)},
            "connect_ms": {"p50": pct(&connect_ms, 50.0), "p95": pct(&connect_ms, 95.0)},
            "first_media_ms": {"p50": pct(&media_ms, 50.0), "p95": pct(&media_ms, 95.0)},
            "packets_sent": sent,
            "packets_sent_audio": s.sent_audio.load(Relaxed),
            "packets_sent_video": s.sent_video.load(Relaxed),
            "bytes_sent": s.sent_bytes.load(Relaxed),
            "packets_received": recv,
            "packets_received_audio": s.received_audio.load(Relaxed),
            "packets_received_video": s.received_video.load(Relaxed),
            "packets_received_unstamped": s.received_unstamped.load(Relaxed),
            "bytes_received": s.received_bytes.load(Relaxed),
            "steady": {"seconds": steady_secs, "sent_pps": steady_sent_pps, "received_pps": steady_recv_pps, "received_payload_bps": steady_recv_bps},
            "loss_pct": loss,
            "rtp_expected": rtp_exp,
            "rtp_received": rtp_rec,
            "audio_loss_pct": audio_loss,
            "latency_ms": {"p50": lat(50.0), "p99": lat(99.0), "max": hist.max_us() as f64 / 1e3, "mean": hist.mean_us().map(|u| u / 1e3), "samples": hist.count()},
            "latency_audio_ms": {"p50": lat_a(50.0), "p99": lat_a(99.0), "samples": hist_audio.count()},
            "latency_video_ms": {"p50": lat_v(50.0), "p99": lat_v(99.0), "samples": hist_video.count()},
            "received_by_layer": {"q": by_stream[1], "h": by_stream[2], "f": by_stream[3]},
            "publish_layers_received": s.publish_layers.load(Relaxed),
            "keyframes_sent": s.keyframes_sent.load(Relaxed),
            "keyframe_requests_received": s.keyframe_requests.load(Relaxed),
            "server_offers": s.server_offers.load(Relaxed),
            "layer_changes": s.layer_changes.load(Relaxed),
            "signaling_errors": s.signaling_errors.load(Relaxed),
            "udp_send_errors": s.udp_send_errors.load(Relaxed),
            "sfu_metrics_delta": (!answered.is_empty()).then(|| {
                METRICS.iter().enumerate().map(|(i, m)| (m.to_string(), json!(delta(i)))).collect::<serde_json::Map<_, _>>()
            }),
            "nodes": cluster_json,
            "rejoin": rejoin_json,
            "kernel_udp_in_errors": udp_errors.map(|x| x.0),
            "kernel_udp_rcvbuf_errors": udp_errors.map(|x| x.1),
            "sfu_cpu_s": sfu_cpu,
            "synth_cpu_s": self_cpu,
            "wall_s": wall,
            "expect_media_failures": missing,
            "errors": errors,
            "slow_packets": slow_count,
            "slow_first": slow.iter().map(|(us, at, st)| json!({"latency_ms": *us as f64 / 1e3, "at_s": at, "stream": st})).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("write {path}"))?;
    }

    if args.expect_media {
        if missing.is_empty() && s.joined.load(Relaxed) as usize == total {
            eprintln!("synth: expect-media OK: all {total} participants received audio and video from every other participant of their room");
        } else {
            for m in missing.iter().take(20) {
                eprintln!("synth: expect-media FAILED: {m}");
            }
            eprintln!(
                "synth: expect-media FAILED ({} problems, {} of {total} joined)",
                missing.len(),
                s.joined.load(Relaxed)
            );
            return Ok(1);
        }
    }
    Ok(0)
}
