//! The live directory in Redis: which nodes are up (a hash per node with a TTL, refreshed by
//! its heartbeat) and which node holds each consult (one key per room). Every decision that
//! two nodes could race on runs as one Lua script, which Redis executes atomically: two joins
//! for the same consult on two nodes read and write the room key one after the other, so the
//! second sees the first's choice.
//!
//! Keys (all under `consult:`): `node:<id>` hash {url, media, rooms, participants, bitrate,
//! cpu, accepting, at}; `nodes` set of ids; `room:<room>` = node id (TTL, refreshed by the holder);
//! `placed:<id>` sorted set of rooms placed on a node by time, so consults placed between two
//! heartbeats count towards its load.

use std::time::Duration;

use super::redis::{Redis, RedisError};
use super::resp::Reply;

/// How a node's load is reported in its heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeLoad {
    pub participants: u64,
    /// Forwarded media, bits per second over the last heartbeat interval.
    pub bitrate_bps: u64,
    /// Process CPU as a fraction of all cores.
    pub cpu: f64,
    /// False while draining, restarting or saturated: no new consults are placed here.
    pub accepting: bool,
}

/// A node as the directory lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    /// Its signaling WebSocket (`ws://host:port/ws`).
    pub url: String,
    /// Its media address (the UDP candidate browsers send to).
    pub media: String,
    pub rooms: u64,
    pub participants: u64,
    pub bitrate_bps: u64,
    pub cpu: f64,
    pub accepting: bool,
}

/// Where a consult's participants must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Here,
    Elsewhere { node: String, url: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("no node accepts new consults (all draining, restarting or saturated)")]
    NoNode,
    #[error("redis directory: unexpected reply {0:?}")]
    Unexpected(Reply),
}

/// Writes this node's hash and refreshes the room keys it holds: claims those that expired or
/// whose holder is dead, and returns those another live node holds now (this node stalled past
/// its TTL, or Redis restarted empty, and a join placed the consult elsewhere meanwhile): the
/// caller hands them over, so a consult never stays split over two nodes.
/// ARGV: id, node_ttl_ms, room_ttl_ms, url, rooms, participants, bitrate, cpu, accepting, media,
/// room...
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = 'consult:node:' .. ARGV[1]
redis.call('HSET', key, 'url', ARGV[4], 'rooms', ARGV[5], 'participants', ARGV[6],
  'bitrate', ARGV[7], 'cpu', ARGV[8], 'accepting', ARGV[9], 'media', ARGV[10], 'at', now)
redis.call('PEXPIRE', key, ARGV[2])
redis.call('SADD', 'consult:nodes', ARGV[1])
local lost = {}
for i = 11, #ARGV do
  local rk = 'consult:room:' .. ARGV[i]
  local cur = redis.call('GET', rk)
  if (not cur) or cur == ARGV[1] or redis.call('EXISTS', 'consult:node:' .. cur) == 0 then
    redis.call('SET', rk, ARGV[1], 'PX', ARGV[3])
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"#;

/// The room's node if it is alive; else (with ARGV[2] = 'place') the least-loaded accepting
/// node, written as the room's node. Load = consults at its last heartbeat + consults placed
/// since; ties go to the lower id so a burst of placements spreads deterministically.
/// KEYS: room key. ARGV: room_ttl_ms, 'place' | 'lookup'. Returns {id, url} or nil.
const PLACE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local url = redis.call('HGET', 'consult:node:' .. cur, 'url')
  if url then return {cur, url} end
end
if ARGV[2] ~= 'place' then return nil end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local best, best_load, best_url = nil, nil, nil
for _, id in ipairs(redis.call('SMEMBERS', 'consult:nodes')) do
  local h = redis.call('HMGET', 'consult:node:' .. id, 'url', 'rooms', 'at', 'accepting')
  if not h[1] then
    redis.call('SREM', 'consult:nodes', id)
    redis.call('DEL', 'consult:placed:' .. id)
  elseif h[4] == '1' then
    local pending = redis.call('ZCOUNT', 'consult:placed:' .. id, '(' .. h[3], '+inf')
    local load = tonumber(h[2]) + pending
    if best == nil or load < best_load or (load == best_load and id < best) then
      best, best_load, best_url = id, load, h[1]
    end
  end
end
if not best then return nil end
redis.call('SET', KEYS[1], best, 'PX', ARGV[1])
redis.call('ZADD', 'consult:placed:' .. best, now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', 'consult:placed:' .. best, '-inf', now - 60000)
return {best, best_url}
"#;

/// Deletes the room key if this node (ARGV[1]) holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Every live node: {id, url, rooms, participants, bitrate, cpu, accepting, media} per node.
const NODES: &str = r#"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', 'consult:nodes')) do
  local h = redis.call('HMGET', 'consult:node:' .. id, 'url', 'rooms', 'participants',
    'bitrate', 'cpu', 'accepting', 'media')
  if h[1] then
    table.insert(out, {id, h[1], h[2], h[3], h[4], h[5], h[6], h[7] or ''})
  end
end
return out
"#;

/// A consult key left behind by a node that died is dead weight only until its TTL: long
/// enough that the holder's heartbeats (every second) always refresh it in time.
pub const ROOM_TTL: Duration = Duration::from_secs(30);

pub struct Directory {
    redis: Redis,
    node: String,
    url: String,
    media: String,
    node_ttl: Duration,
}

impl Directory {
    pub fn new(redis: Redis, node: String, url: String, media: String, node_ttl: Duration) -> Self {
        Directory {
            redis,
            node,
            url,
            media,
            node_ttl,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Returns the rooms another live node holds now (see `HEARTBEAT`).
    pub async fn heartbeat(
        &self,
        load: &NodeLoad,
        rooms: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        let node_ttl = millis(self.node_ttl);
        let room_ttl = millis(ROOM_TTL);
        let count = rooms.len().to_string();
        let participants = load.participants.to_string();
        let bitrate = load.bitrate_bps.to_string();
        let cpu = format!("{:.3}", load.cpu);
        let accepting = if load.accepting { "1" } else { "0" };
        let mut args: Vec<&[u8]> = vec![
            b"EVAL",
            HEARTBEAT.as_bytes(),
            b"0",
            self.node.as_bytes(),
            node_ttl.as_bytes(),
            room_ttl.as_bytes(),
            self.url.as_bytes(),
            count.as_bytes(),
            participants.as_bytes(),
            bitrate.as_bytes(),
            cpu.as_bytes(),
            accepting.as_bytes(),
            self.media.as_bytes(),
        ];
        args.extend(rooms.iter().map(|r| r.as_bytes()));
        match self.redis.heartbeat_command(&args).await? {
            Reply::Array(lost) => Ok(lost
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()),
            other => Err(DirectoryError::Unexpected(other)),
        }
    }

    /// Where `room` runs, placing it (atomically) if no live node holds it.
    pub async fn place(&self, room: &str) -> Result<Placement, DirectoryError> {
        self.run_place(room, "place")
            .await?
            .ok_or(DirectoryError::NoNode)
    }

    /// Where `room` runs, if a live node holds it; never places it.
    pub async fn lookup(&self, room: &str) -> Result<Option<Placement>, DirectoryError> {
        self.run_place(room, "lookup").await
    }

    async fn run_place(&self, room: &str, mode: &str) -> Result<Option<Placement>, DirectoryError> {
        let key = room_key(room);
        let ttl = millis(ROOM_TTL);
        let reply = self
            .redis
            .command(&[
                b"EVAL",
                PLACE.as_bytes(),
                b"1",
                key.as_bytes(),
                ttl.as_bytes(),
                mode.as_bytes(),
            ])
            .await?;
        match reply {
            Reply::Nil => Ok(None),
            Reply::Array(items) => match items.as_slice() {
                [id, url] => {
                    let (Some(id), Some(url)) = (id.as_str(), url.as_str()) else {
                        return Err(DirectoryError::Unexpected(Reply::Array(items)));
                    };
                    Ok(Some(if id == self.node {
                        Placement::Here
                    } else {
                        Placement::Elsewhere {
                            node: id.to_string(),
                            url: url.to_string(),
                        }
                    }))
                }
                _ => Err(DirectoryError::Unexpected(Reply::Array(items))),
            },
            other => Err(DirectoryError::Unexpected(other)),
        }
    }

    /// The consult ended here: the next join may place it anywhere.
    pub async fn release(&self, room: &str) -> Result<(), DirectoryError> {
        let key = room_key(room);
        self.redis
            .command(&[
                b"EVAL",
                RELEASE.as_bytes(),
                b"1",
                key.as_bytes(),
                self.node.as_bytes(),
            ])
            .await?;
        Ok(())
    }

    /// Leaves the directory at once (graceful shutdown): its consults are placed elsewhere
    /// on the next join instead of after the TTL.
    pub async fn leave(&self) -> Result<(), DirectoryError> {
        let key = format!("consult:node:{}", self.node);
        self.redis.command(&[b"DEL", key.as_bytes()]).await?;
        self.redis
            .command(&[b"SREM", b"consult:nodes", self.node.as_bytes()])
            .await?;
        Ok(())
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, DirectoryError> {
        let reply = self
            .redis
            .command(&[b"EVAL", NODES.as_bytes(), b"0"])
            .await?;
        let Reply::Array(rows) = reply else {
            return Err(DirectoryError::Unexpected(reply));
        };
        let mut nodes = Vec::with_capacity(rows.len());
        for row in rows {
            let Reply::Array(f) = &row else {
                return Err(DirectoryError::Unexpected(row));
            };
            let text = |i: usize| f.get(i).and_then(Reply::as_str).unwrap_or_default();
            let num = |i: usize| text(i).parse::<u64>().unwrap_or(0);
            nodes.push(NodeInfo {
                id: text(0).to_string(),
                url: text(1).to_string(),
                rooms: num(2),
                participants: num(3),
                bitrate_bps: num(4),
                cpu: text(5).parse().unwrap_or(0.0),
                accepting: text(6) == "1",
                media: text(7).to_string(),
            });
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }
}

fn room_key(room: &str) -> String {
    format!("consult:room:{room}")
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}
