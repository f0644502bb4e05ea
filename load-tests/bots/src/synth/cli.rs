//! `synth`'s command line: flags, their defaults and the combinations it refuses, checked
//! before any bot starts so a bad invocation costs nothing. Also reads the `--invites` file,
//! since how many consults it holds decides `--rooms`.

use anyhow::{bail, Context, Result};

use crate::cluster::{self, InviteRoom};
use crate::room::Target;

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

pub struct Args {
    pub target: Target,
    pub server: String,
    pub rooms: usize,
    pub per_room: usize,
    pub duration: f64,
    pub ramp: f64,
    pub json: Option<String>,
    pub simulcast: bool,
    pub dynacast: bool,
    pub expect_media: bool,
    pub threads: usize,
    pub sfu_pid: Option<u32>,
    pub bind_ip: std::net::IpAddr,
    pub rejoin: bool,
    pub join_together: bool,
    pub invites: Option<String>,
}

fn parse_bool(s: &str) -> Result<bool> {
    match s {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("expected true or false, got {s:?}"),
    }
}

pub fn parse_args() -> Result<Args> {
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
pub fn load_invites(path: &str, rooms: usize, per_room: usize) -> Result<Vec<InviteRoom>> {
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
