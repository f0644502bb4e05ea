//! Where each room ended when several SFU nodes serve the run (bots follow redirects and
//! fail over): the node per room, rooms per node and rooms split across nodes, for the table
//! and the JSON. Only the rows are printed conditionally; the JSON always has them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::json;

use crate::cluster;
use crate::room::{BotSummary, Shared};

/// Rooms by the node they ended on.
pub(super) struct Placement {
    /// Per room: its name, the node it ended on (`None` if split), every participant's node.
    room_nodes: Vec<(String, Option<String>, Vec<Option<String>>)>,
    per_node: BTreeMap<String, usize>,
    split: usize,
    pub(super) cluster_json: serde_json::Value,
}

impl Placement {
    pub(super) fn new(
        summaries: &[BotSummary],
        rooms: usize,
        ws_urls: &[String],
        s: &Shared,
    ) -> Self {
        // Several nodes: where each room ended (every participant's last node).
        let mut by_room: std::collections::BTreeMap<usize, Vec<&BotSummary>> = Default::default();
        for b in summaries {
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
            "urls": ws_urls.iter().map(|u| cluster::canonical_node(u)).collect::<Vec<_>>(),
            "rooms_per_node": per_node,
            "rooms_not_on_one_node": split,
            "redirects": s.redirects.load(Relaxed),
            "connect_failures": s.connect_failures.load(Relaxed),
            "rooms": room_nodes.iter().map(|(name, node, bots)| json!({"room": name, "node": node, "bots": bots})).collect::<Vec<_>>(),
        });
        Placement {
            room_nodes,
            per_node,
            split,
            cluster_json,
        }
    }

    /// The table rows for several nodes (or redirects): rooms per node, split rooms, each
    /// room's node, redirects and failed connections.
    pub(super) fn print_rows(&self, s: &Shared) {
        let Placement {
            room_nodes,
            per_node,
            split,
            ..
        } = self;
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
}
