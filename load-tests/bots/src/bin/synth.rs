//! `synth`: synthetic WebRTC load against the consult SFU (or anything speaking the same
//! signaling subset). See `load-tests/bots/README.md`.
//!
//! This file is the shell of a run: it starts the rooms, prints progress every 5 s and collects
//! what they report. The command line, the outside counters and the end-of-run report are in
//! [`consult_bots::synth`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use consult_bots::cluster;
use consult_bots::rejoin::unix_ms;
use consult_bots::room::{self, BotSummary, Config, Shared, Target};
use consult_bots::stamp;
use consult_bots::synth::cli::{load_invites, parse_args, Args};
use consult_bots::synth::probe::{cpu_seconds, read_all_metrics, udp_kernel_errors};
use consult_bots::synth::report::{ms, report, Finished};

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
                        shared.steady.store(true, Relaxed);
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

    report(Finished {
        args: &args,
        rooms,
        total,
        has_metrics,
        addrs: &addrs,
        ws_urls: &cfg.ws_urls,
        shared: &shared,
        summaries,
        steady_from,
        steady_to,
        metrics_before,
        metrics_after,
        sfu_cpu_before,
        sfu_cpu_end,
        self_cpu_before,
        self_cpu_end,
        udp_errors,
        wall,
    })
}
