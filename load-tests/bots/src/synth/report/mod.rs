//! The end of a run: what the bots counted, turned into a markdown table on stdout, the
//! `--json` file for the benchmarks, and the `--expect-media` verdict that is `synth`'s exit
//! code. Sections that only some runs have (several nodes, `--rejoin`) are in submodules.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use super::cli::Args;
use super::probe::METRICS;
use crate::room::{BotSummary, Shared};

mod placement;
mod recovery;

use placement::Placement;
use recovery::RejoinStats;

pub fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

pub fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

/// What a run hands to the report once its rooms have stopped.
pub struct Finished<'a> {
    pub args: &'a Args,
    pub rooms: usize,
    pub total: usize,
    /// Ours (with `/metrics`), not Janus.
    pub has_metrics: bool,
    pub addrs: &'a [String],
    pub ws_urls: &'a [String],
    pub shared: &'a Shared,
    pub summaries: Vec<BotSummary>,
    /// (when, packets sent, packets received, payload bytes received)
    pub steady_from: Option<(Instant, u64, u64, u64)>,
    pub steady_to: (Instant, u64, u64, u64),
    pub metrics_before: Vec<Option<Vec<Option<f64>>>>,
    pub metrics_after: Vec<Option<Vec<Option<f64>>>>,
    pub sfu_cpu_before: Option<f64>,
    pub sfu_cpu_end: Option<f64>,
    pub self_cpu_before: Option<f64>,
    pub self_cpu_end: Option<f64>,
    pub udp_errors: Option<(u64, u64)>,
    pub wall: f64,
}

/// Prints the table (errors to stderr), writes `--json` and returns the exit code: 1 if
/// `--expect-media` found a participant without media from every other, else 0.
pub fn report(run: Finished<'_>) -> Result<i32> {
    let Finished {
        args,
        rooms,
        total,
        has_metrics,
        addrs,
        ws_urls,
        shared: s,
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
    } = run;

    // ---- report ----
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
    let hist_steady = s.hist_steady.lock().unwrap().clone();
    let lat_s = |p: f64| hist_steady.percentile(p).map(|u| u as f64 / 1e3);
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

    let missing = expect_media_failures(&summaries, args.rejoin);
    let placement = Placement::new(&summaries, rooms, ws_urls, s);
    let rejoin = RejoinStats::new(&summaries, args.rejoin, s);

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
        "| latency in the steady state p50 / p99 / max (ms) | {} / {} / {} |",
        ms(lat_s(50.0)),
        ms(lat_s(99.0)),
        ms(Some(hist_steady.max_us() as f64 / 1e3))
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
        placement.print_rows(s);
    }
    if args.rejoin {
        rejoin.print_rows();
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
            "latency_steady_ms": {"p50": lat_s(50.0), "p99": lat_s(99.0), "max": hist_steady.max_us() as f64 / 1e3, "samples": hist_steady.count()},
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
            "nodes": placement.cluster_json,
            "rejoin": rejoin.rejoin_json,
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

/// `--expect-media`: every participant that never connected, or got under 10 audio or video
/// packets from some other participant of its room (or, with `--rejoin`, lost its node and did
/// not get media from everyone again).
fn expect_media_failures(summaries: &[BotSummary], rejoin: bool) -> Vec<String> {
    // --expect-media
    let mut missing: Vec<String> = Vec::new();
    for b in summaries {
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
        if rejoin && b.recovery.unrecovered() > 0 {
            missing.push(format!(
                "participant {} ({}, room {}) lost its node and did not get media from every other participant again",
                b.sender, b.role, b.room
            ));
        }
    }
    missing
}
