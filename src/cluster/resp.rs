//! RESP2, the protocol redis-server speaks: commands out as arrays of bulk strings, replies
//! in. Pure: bytes in, values out, no sockets. A handful of commands is all the cluster needs,
//! which does not justify the `redis` crate's ~30 dependencies (url, idna, combine, ...).

/// One reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`: the command failed; the connection is fine.
    Error(String),
    Int(i64),
    /// `$-1`: a missing key.
    Nil,
    Bulk(Vec<u8>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a bulk or status reply.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Bulk(b) => std::str::from_utf8(b).ok(),
            Reply::Status(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("redis reply: unknown type byte {0:#04x}")]
    UnknownType(u8),
    #[error("redis reply: bad length or integer {0:?}")]
    BadNumber(String),
    #[error("redis reply: line not ended by CRLF")]
    BadLine,
    #[error("redis reply: nested deeper than {MAX_DEPTH} arrays")]
    TooDeep,
    #[error("redis reply: {0} bytes is over the {MAX_BULK} limit")]
    TooLarge(i64),
}

/// Our replies are small (a node list, a few ids); anything bigger is a wrong server.
pub const MAX_BULK: i64 = 1 << 20;
const MAX_ARRAY: i64 = 1 << 16;
const MAX_DEPTH: usize = 8;

/// Appends `args` as one command (an array of bulk strings).
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one reply from the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// reply and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::TooDeep);
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((line, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Status(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Int(number(line)?), next))),
        b'$' => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Reply::Nil, next)));
            }
            if len < 0 {
                return Err(RespError::BadNumber(len.to_string()));
            }
            if len > MAX_BULK {
                return Err(RespError::TooLarge(len));
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::BadLine);
            }
            Ok(Some((Reply::Bulk(buf[next..end].to_vec()), end + 2)))
        }
        b'*' => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Reply::Nil, next)));
            }
            if len < 0 {
                return Err(RespError::BadNumber(len.to_string()));
            }
            if len > MAX_ARRAY {
                return Err(RespError::TooLarge(len));
            }
            let mut items = Vec::with_capacity(len.min(64) as usize);
            let mut pos = next;
            for _ in 0..len {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        pos = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(items), pos)))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

/// The bytes up to CRLF from `from`, and the index after the CRLF.
fn line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r') {
        None => Ok(None),
        Some(i) => match rest.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((&rest[..i], from + i + 2))),
            Some(_) => Err(RespError::BadLine),
        },
    }
}

fn number(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RespError::BadNumber(String::from_utf8_lossy(line).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = Vec::new();
        encode(&[b"SET", b"k", b"v 1"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv 1\r\n");
    }

    #[test]
    fn parses_each_reply_kind() {
        use Reply::*;
        let cases: &[(&[u8], Reply, usize)] = &[
            (b"+OK\r\n", Status("OK".into()), 5),
            (b"-ERR wrong\r\n", Error("ERR wrong".into()), 12),
            (b":-42\r\n", Int(-42), 6),
            (b"$-1\r\n", Nil, 5),
            (b"*-1\r\n", Nil, 5),
            (b"$0\r\n\r\n", Bulk(vec![]), 6),
            (b"$4\r\nn\r\n1\r\n", Bulk(b"n\r\n1".to_vec()), 10),
            (
                b"*2\r\n$2\r\nn1\r\n*1\r\n:3\r\n+x",
                Array(vec![Bulk(b"n1".to_vec()), Array(vec![Int(3)])]),
                20,
            ),
        ];
        for (input, want, used) in cases {
            assert_eq!(
                parse(input).unwrap(),
                Some((want.clone(), *used)),
                "{input:?}"
            );
        }
    }

    #[test]
    fn waits_for_the_rest_of_a_split_reply() {
        let whole = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(whole).unwrap().is_some());
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        let cases: &[(&[u8], RespError)] = &[
            (b"?\r\n", RespError::UnknownType(b'?')),
            (b":x\r\n", RespError::BadNumber("x".into())),
            (b"+a\rb\r\n", RespError::BadLine),
            (b"$3\r\nabcde", RespError::BadLine),
            (b"$99999999999\r\n", RespError::TooLarge(99_999_999_999)),
            (b"$-2\r\n", RespError::BadNumber("-2".into())),
            (b"*-5\r\n", RespError::BadNumber("-5".into())),
            (
                b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
                RespError::TooDeep,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap_err(), *want, "{input:?}");
        }
    }
}
