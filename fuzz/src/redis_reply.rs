//! Redis replies (`consult_sfu::cluster::resp`): what a node reads from the directory's
//! server. A broken or hostile server must give errors, never a panic or a runaway allocation.

use consult_sfu::cluster::resp::{parse, Reply};

/// No panic; a parsed reply used at most the input, and every shorter prefix of it asks for
/// more bytes instead of parsing as something else.
pub fn redis_reply(data: &[u8]) {
    let Ok(Some((reply, used))) = parse(data) else {
        return;
    };
    assert!(used > 0 && used <= data.len());
    assert_eq!(parse(&data[..used]), Ok(Some((reply.clone(), used))));
    // A few cut points (all of them is quadratic): the reply is complete only at its end.
    for cut in [0, used / 3, used / 2, used.saturating_sub(1)] {
        if cut < used {
            assert_eq!(
                parse(&data[..cut]),
                Ok(None),
                "prefix of {used} cut at {cut}"
            );
        }
    }
    if let Reply::Bulk(b) = &reply {
        assert!(b.len() < used);
    }
}

/// Replies a node gets from redis-server 7 (the directory's scripts, GET, SET NX, PING).
pub fn seeds() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("pong", b"+PONG\r\n"),
        ("ok", b"+OK\r\n"),
        ("nil", b"$-1\r\n"),
        ("int", b":1764129600123\r\n"),
        ("noauth", b"-NOAUTH Authentication required.\r\n"),
        ("secret", b"$8\r\n0a1b2c3d\r\n"),
        ("placed", b"*2\r\n$2\r\nn2\r\n$21\r\nws://127.0.0.1:8082/ws\r\n"),
        (
            "nodes",
            b"*1\r\n*7\r\n$2\r\nn1\r\n$21\r\nws://127.0.0.1:8081/ws\r\n$1\r\n3\r\n$1\r\n9\r\n$6\r\n450000\r\n$5\r\n0.120\r\n$1\r\n1\r\n",
        ),
    ]
}
