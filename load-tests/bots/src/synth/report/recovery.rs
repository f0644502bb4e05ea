//! `--rejoin`: how the bots that lost their node came back, per bot its longest media gap
//! and time to rejoin, summed up as max / median for the table and in full in the JSON.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::json;

use super::ms;
use crate::rejoin::{median, unix_ms};
use crate::room::{BotSummary, Shared};

/// Outages and recovery over the bots that had any.
pub(super) struct RejoinStats<'a> {
    with_outages: Vec<&'a BotSummary>,
    gap_max: Option<f64>,
    gap_median: Option<f64>,
    rejoin_max: Option<f64>,
    rejoin_median: Option<f64>,
    outages: usize,
    unrecovered: usize,
    /// `None` without `--rejoin`.
    pub(super) rejoin_json: Option<serde_json::Value>,
}

impl<'a> RejoinStats<'a> {
    pub(super) fn new(summaries: &'a [BotSummary], rejoin: bool, s: &Shared) -> Self {
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
        let rejoin_json = rejoin.then(|| {
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
        RejoinStats {
            with_outages,
            gap_max,
            gap_median,
            rejoin_max,
            rejoin_median,
            outages,
            unrecovered,
            rejoin_json,
        }
    }

    /// The table rows for `--rejoin`.
    pub(super) fn print_rows(&self) {
        let RejoinStats {
            ref with_outages,
            gap_max,
            gap_median,
            rejoin_max,
            rejoin_median,
            outages,
            unrecovered,
            ..
        } = *self;
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
}
