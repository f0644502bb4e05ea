//! Several SFU nodes (issue 9): the node list the bots spread their first connections over,
//! the redirect chain a join follows to the node holding its consult, the invites file, and
//! which node each room ended on. All pure; the IO is in [`crate::ours`].

use std::collections::BTreeMap;

/// A join follows at most this many `redirect`s: more means the nodes disagree about where
/// the consult lives (a loop), which a test must see rather than wait out.
pub const MAX_REDIRECTS: usize = 5;

/// `http://h:p,ws://h:p/ws,h:p` -> `["h:p", ...]` (order kept: it is the rotation order).
pub fn parse_server_list(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.push(host_port(item)?);
    }
    if out.is_empty() {
        return Err(format!("no server in {list:?}"));
    }
    Ok(out)
}

/// `http://host:port[/...]` (or `ws://`, or bare `host:port`) -> `host:port`
pub fn host_port(server: &str) -> Result<String, String> {
    let rest = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("ws://"))
        .unwrap_or(server);
    let hp = rest.split('/').next().unwrap_or("");
    if hp.is_empty() || !hp.contains(':') {
        return Err(format!(
            "a server must look like http://127.0.0.1:8080, got {server:?}"
        ));
    }
    Ok(hp.to_string())
}

/// The order in which a bot tries the nodes: its own first (bots round-robin over the list by
/// their global index, so a room's participants start on different nodes), then the next ones,
/// each once, so a dead node costs one refused connection.
pub fn rotation(nodes: usize, bot: usize) -> impl Iterator<Item = usize> {
    (0..nodes).map(move |i| (bot + i) % nodes)
}

/// The redirects one join followed, to count hops and to say where it went.
#[derive(Debug, Clone)]
pub struct RedirectChain {
    urls: Vec<String>,
}

impl RedirectChain {
    /// Starts at the node the join was first sent to.
    pub fn new(first: &str) -> Self {
        RedirectChain {
            urls: vec![first.to_string()],
        }
    }

    /// Records one `redirect` to `url`; an error past [`MAX_REDIRECTS`] hops (naming them all).
    pub fn follow(&mut self, url: &str) -> Result<(), String> {
        self.urls.push(url.to_string());
        if self.hops() > MAX_REDIRECTS {
            return Err(format!(
                "more than {MAX_REDIRECTS} redirects: {}",
                self.urls.join(" -> ")
            ));
        }
        Ok(())
    }

    pub fn hops(&self) -> usize {
        self.urls.len() - 1
    }

    /// Where the join is now (the last redirect's target, or where it started).
    pub fn current(&self) -> &str {
        // Invariant: `new` puts the first URL in, and nothing removes any.
        self.urls.last().expect("a chain starts with one URL")
    }
}

/// A `redirect`'s target, if it is a WebSocket URL the bots can open (`ws://`; a `wss://`
/// would need TLS the bots do not speak).
pub fn redirect_target(msg: &serde_json::Value) -> Result<String, String> {
    let url = msg["url"]
        .as_str()
        .ok_or_else(|| format!("redirect without url: {msg}"))?;
    if !url.starts_with("ws://") {
        return Err(format!(
            "redirect to {url:?}: only ws:// URLs are supported"
        ));
    }
    Ok(url.to_string())
}

/// A node's URL as the report names it: `localhost` spelled `127.0.0.1`, since a node
/// advertises itself (and redirects) as `localhost` by default while `--server` lists it by
/// address, and one node must not look like two.
pub fn canonical_node(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = match host_port.strip_prefix("localhost") {
        Some(port) if port.is_empty() || port.starts_with(':') => format!("127.0.0.1{port}"),
        _ => host_port.to_string(),
    };
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    if path.is_empty() && !rest.contains('/') {
        format!("{scheme}{host_port}")
    } else {
        format!("{scheme}{host_port}/{path}")
    }
}

/// One consult of an invites file: its label and one invite token per participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRoom {
    pub label: String,
    pub tokens: Vec<String>,
}

/// Parses `label<TAB>token1<TAB>token2...` lines (blank lines and `#` comments skipped); every
/// line must carry `per_room` tokens, one per participant in join order (clinic first).
pub fn parse_invites(text: &str, per_room: usize) -> Result<Vec<InviteRoom>, String> {
    let mut rooms = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let label = fields.next().unwrap_or("").trim().to_string();
        let tokens: Vec<String> = fields.map(|t| t.trim().to_string()).collect();
        if label.is_empty() || tokens.iter().any(String::is_empty) {
            return Err(format!("line {}: an empty label or token", n + 1));
        }
        if tokens.len() != per_room {
            return Err(format!(
                "line {}: {} tokens, but --per-room is {per_room}",
                n + 1,
                tokens.len()
            ));
        }
        rooms.push(InviteRoom { label, tokens });
    }
    if rooms.is_empty() {
        return Err("no consult in the invites file".into());
    }
    Ok(rooms)
}

/// Where one room ended: the node all its participants were on, or `None` if they were split
/// (or some never joined).
pub fn room_node<'a>(bot_nodes: &[Option<&'a str>]) -> Option<&'a str> {
    let first = (*bot_nodes.first()?)?;
    bot_nodes.iter().all(|n| *n == Some(first)).then_some(first)
}

/// Rooms per node, for rooms that ended whole on one node.
pub fn rooms_per_node<'a>(
    rooms: impl IntoIterator<Item = Option<&'a str>>,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for node in rooms.into_iter().flatten() {
        *out.entry(node.to_string()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_list() {
        assert_eq!(
            parse_server_list("http://127.0.0.1:1,ws://127.0.0.1:2/ws, 127.0.0.1:3 ,").unwrap(),
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        );
        assert!(parse_server_list(",").is_err());
        assert!(parse_server_list("http://localhost").is_err());
    }

    #[test]
    fn rotation_starts_at_the_bot_and_visits_each_node_once() {
        assert_eq!(rotation(3, 0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rotation(3, 4).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(rotation(1, 7).collect::<Vec<_>>(), [0]);
        // A room of 3 over 3 nodes: each participant starts on another node.
        let firsts: Vec<usize> = (9..12).map(|b| rotation(3, b).next().unwrap()).collect();
        assert_eq!(firsts, [0, 1, 2]);
    }

    #[test]
    fn redirect_hops_are_counted_and_capped() {
        let mut c = RedirectChain::new("ws://a/ws");
        assert_eq!((c.hops(), c.current()), (0, "ws://a/ws"));
        for i in 0..MAX_REDIRECTS {
            c.follow(&format!("ws://n{i}/ws")).unwrap();
        }
        assert_eq!(c.hops(), MAX_REDIRECTS);
        assert_eq!(c.current(), "ws://n4/ws");
        let e = c.follow("ws://a/ws").unwrap_err();
        assert!(
            e.contains("more than 5 redirects: ws://a/ws -> ws://n0/ws"),
            "{e}"
        );
    }

    #[test]
    fn redirect_targets() {
        let ok = json!({"v":1,"type":"redirect","url":"ws://127.0.0.1:9/ws"});
        assert_eq!(redirect_target(&ok).unwrap(), "ws://127.0.0.1:9/ws");
        assert!(redirect_target(&json!({"type":"redirect"})).is_err());
        assert!(redirect_target(&json!({"type":"redirect","url":"wss://x/ws"})).is_err());
    }

    #[test]
    fn invites_file() {
        let text = "# label, clinic, specialist, patient\nc1\ta\tb\tc\n\nc2\td\te\tf\r\n";
        let rooms = parse_invites(text, 3).unwrap();
        assert_eq!(rooms.len(), 2);
        assert_eq!(rooms[1].label, "c2");
        assert_eq!(rooms[1].tokens, ["d", "e", "f"]);
        assert!(parse_invites("c1\ta\tb\n", 3)
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_invites("c1\ta\t\tc\n", 3).is_err());
        assert!(parse_invites("\n# nothing\n", 3).is_err());
    }

    #[test]
    fn localhost_is_the_loopback_address() {
        assert_eq!(
            canonical_node("ws://localhost:80/ws"),
            "ws://127.0.0.1:80/ws"
        );
        assert_eq!(
            canonical_node("ws://127.0.0.1:80/ws"),
            "ws://127.0.0.1:80/ws"
        );
        assert_eq!(
            canonical_node("ws://localhostx:80/ws"),
            "ws://localhostx:80/ws"
        );
        assert_eq!(canonical_node("localhost:8"), "127.0.0.1:8");
        assert_eq!(canonical_node("ws://localhost:8/"), "ws://127.0.0.1:8/");
    }

    #[test]
    fn where_rooms_ended() {
        assert_eq!(room_node(&[Some("a"), Some("a"), Some("a")]), Some("a"));
        assert_eq!(room_node(&[Some("a"), Some("b"), Some("a")]), None);
        assert_eq!(room_node(&[Some("a"), None]), None);
        assert_eq!(room_node(&[]), None);
        let per = rooms_per_node([Some("a"), Some("b"), None, Some("a")]);
        assert_eq!(
            per.into_iter().collect::<Vec<_>>(),
            [("a".into(), 2), ("b".into(), 1)]
        );
    }
}
