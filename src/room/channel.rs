//! Chat and image sharing over each participant's `consult` data channel, relayed by the room
//! to the others. Nothing is stored: an image passes through in 16 KiB chunks, and the sender
//! gets an ack per chunk once every recipient's send buffer has room, so a slow recipient
//! slows the sender (back-pressure) instead of growing server memory.

use serde::{Deserialize, Serialize};
use tracing::info;

use super::permission::{self, Action};
use super::Room;
use crate::ids::ParticipantId;

/// The label the web client gives its channel.
pub const LABEL: &str = "consult";
/// Payload bytes per image chunk (all but the last); the chunk adds an 8-byte header.
pub const CHUNK: usize = 16 * 1024;
pub const HEADER: usize = 8;
pub const MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;
pub const MAX_CHAT_CHARS: usize = 2000;
/// Chunks the sender may have unacknowledged (the web client uses the same window).
pub const WINDOW: u32 = 64;
/// A recipient buffering more than this holds back acks.
pub const ACK_HIGH: usize = 512 * 1024;
/// str0m's SCTP send buffer per participant: the high mark plus a full window for each of
/// `MAX_TRANSFERS`, so a relayed write never finds the buffer full.
pub const SCTP_BUFFER: usize = ACK_HIGH + (MAX_TRANSFERS + 1) * WINDOW as usize * (CHUNK + HEADER);
/// Images in flight in one consult at once.
const MAX_TRANSFERS: usize = 2;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ClientText {
    Chat {
        text: String,
    },
    ImageStart {
        id: u32,
        file: String,
        mime: String,
        size: u64,
    },
    ImageAbort {
        id: u32,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum ServerText<'a> {
    Chat {
        from: String,
        sender: &'a str,
        role: signaling::Role,
        text: &'a str,
        at: u64,
    },
    ImageStart {
        id: u32,
        from: String,
        sender: &'a str,
        file: &'a str,
        mime: &'a str,
        size: u64,
    },
    ImageAck {
        id: u32,
        received: u32,
    },
    ImageAbort {
        id: u32,
        reason: &'a str,
    },
    Error {
        code: &'a str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
}

/// Checks a client's text message. Errors are `(code, message)` for the client.
pub fn parse_text(data: &[u8]) -> Result<ClientText, (&'static str, String)> {
    let message: ClientText = serde_json::from_slice(data)
        .map_err(|e| ("invalid", format!("not a consult channel message: {e}")))?;
    match &message {
        ClientText::Chat { text } => {
            let n = text.trim().chars().count();
            if n == 0 || n > MAX_CHAT_CHARS {
                return Err((
                    "invalid",
                    format!("chat text must be 1 to {MAX_CHAT_CHARS} characters"),
                ));
            }
        }
        ClientText::ImageStart {
            file, mime, size, ..
        } => {
            if *size == 0 || *size > MAX_IMAGE_BYTES {
                return Err((
                    "too_large",
                    format!("an image must be 1 byte to {MAX_IMAGE_BYTES} bytes"),
                ));
            }
            if !(mime.starts_with("image/") || mime == "application/dicom") || mime.len() > 100 {
                return Err(("invalid", "only images can be shared".into()));
            }
            if file.is_empty() || file.chars().count() > 200 || file.chars().any(char::is_control) {
                return Err(("invalid", "file name must be 1 to 200 characters".into()));
            }
        }
        ClientText::ImageAbort { .. } => {}
    }
    Ok(message)
}

/// Chunks an image of `size` bytes is sent in.
pub fn chunk_count(size: u64) -> u32 {
    size.div_ceil(CHUNK as u64) as u32
}

/// Payload length chunk `index` must have.
pub fn chunk_len(size: u64, index: u32) -> usize {
    let start = u64::from(index) * CHUNK as u64;
    (size - start).min(CHUNK as u64) as usize
}

/// `(transfer id, chunk index)` from a binary chunk's header.
pub fn parse_header(data: &[u8]) -> Option<(u32, u32)> {
    let id = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?);
    let index = u32::from_be_bytes(data.get(4..8)?.try_into().ok()?);
    Some((id, index))
}

/// One image passing through.
#[derive(Debug)]
pub struct Transfer {
    relay_id: u32,
    sender: ParticipantId,
    sender_id: u32,
    size: u64,
    chunks: u32,
    /// Next chunk expected from the sender (the channel is ordered and reliable).
    next: u32,
    recipients: Vec<ParticipantId>,
    acked: u32,
}

impl Room {
    pub(super) fn on_channel_data(&mut self, from: ParticipantId, binary: bool, data: &[u8]) {
        let Some(i) = self.index(from) else { return };
        if binary {
            self.on_chunk(i, data);
            return;
        }
        let message = match parse_text(data) {
            Ok(m) => m,
            Err((code, message)) => {
                self.channel_send(
                    i,
                    &ServerText::Error {
                        code,
                        message,
                        id: None,
                    },
                );
                return;
            }
        };
        let role = self.participants[i].role;
        match message {
            ClientText::Chat { text } => {
                if !permission::may(role, Action::Chat) {
                    return self.forbid(i, "your role may not chat", None);
                }
                let p = &self.participants[i];
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let text = ServerText::Chat {
                    from: p.id.to_string(),
                    sender: &p.name.clone(),
                    role,
                    text: text.trim(),
                    at,
                };
                let json = to_json(&text);
                for j in 0..self.participants.len() {
                    self.channel_write(j, false, json.as_bytes());
                }
            }
            ClientText::ImageStart {
                id,
                file,
                mime,
                size,
            } => {
                if !permission::may(role, Action::ShareImage) {
                    return self.forbid(i, "your role may not share images", Some(id));
                }
                if self.transfers.len() >= MAX_TRANSFERS
                    || self
                        .transfers
                        .iter()
                        .any(|t| t.sender == from && t.sender_id == id)
                {
                    return self.channel_send(
                        i,
                        &ServerText::Error {
                            code: "busy",
                            message: "another image is being shared; try again in a moment".into(),
                            id: Some(id),
                        },
                    );
                }
                self.next_relay_id = self.next_relay_id.wrapping_add(1);
                let relay_id = self.next_relay_id;
                let p = &self.participants[i];
                let start = to_json(&ServerText::ImageStart {
                    id: relay_id,
                    from: p.id.to_string(),
                    sender: &p.name.clone(),
                    file: &file,
                    mime: &mime,
                    size,
                });
                let mut recipients = Vec::new();
                for j in 0..self.participants.len() {
                    if j != i && self.channel_write(j, false, start.as_bytes()) {
                        recipients.push(self.participants[j].id);
                    }
                }
                info!(participant = %from, size, recipients = recipients.len(), "image share");
                self.transfers.push(Transfer {
                    relay_id,
                    sender: from,
                    sender_id: id,
                    size,
                    chunks: chunk_count(size),
                    next: 0,
                    recipients,
                    acked: 0,
                });
            }
            ClientText::ImageAbort { id } => {
                if let Some(k) = self
                    .transfers
                    .iter()
                    .position(|t| t.sender == from && t.sender_id == id)
                {
                    self.abort_transfer(k, "the sender stopped");
                }
            }
        }
    }

    fn on_chunk(&mut self, i: usize, data: &[u8]) {
        let from = self.participants[i].id;
        let Some((id, index)) = parse_header(data) else {
            return self.channel_send(
                i,
                &ServerText::Error {
                    code: "invalid",
                    message: "a chunk needs an 8-byte header".into(),
                    id: None,
                },
            );
        };
        let Some(k) = self
            .transfers
            .iter()
            .position(|t| t.sender == from && t.sender_id == id)
        else {
            return; // aborted meanwhile: late chunks are expected
        };
        let t = &self.transfers[k];
        if index != t.next
            || index >= t.chunks
            || data.len() - HEADER != chunk_len(t.size, index)
            || index >= t.acked + WINDOW
        {
            self.abort_transfer(k, "the sender broke the chunk protocol");
            return self.channel_send(
                i,
                &ServerText::Error {
                    code: "invalid",
                    message: format!("unexpected chunk {index} of image {id}"),
                    id: Some(id),
                },
            );
        }
        // One scratch buffer per room: relaying allocates nothing per chunk.
        let mut buf = std::mem::take(&mut self.relay_buf);
        buf.clear();
        buf.extend_from_slice(&t.relay_id.to_be_bytes());
        buf.extend_from_slice(&data[4..]);
        let recipients = t.recipients.clone();
        let mut failed = Vec::new();
        for r in recipients {
            match self.index(r) {
                Some(j) if self.channel_write(j, true, &buf) => {}
                _ => failed.push(r),
            }
        }
        self.relay_buf = buf;
        let t = &mut self.transfers[k];
        t.next += 1;
        if !failed.is_empty() {
            t.recipients.retain(|r| !failed.contains(r));
            let relay_id = t.relay_id;
            for r in failed {
                if let Some(j) = self.index(r) {
                    // Its buffer overflowed: it cannot get this image intact any more.
                    self.channel_send(
                        j,
                        &ServerText::ImageAbort {
                            id: relay_id,
                            reason: "your connection is too slow for this image",
                        },
                    );
                }
            }
        }
        self.ack_transfers();
    }

    /// Acks what every recipient has taken in; called after relaying and when a recipient's
    /// buffer drained.
    pub(super) fn ack_transfers(&mut self) {
        let mut k = 0;
        while k < self.transfers.len() {
            let recipients: Vec<usize> = self.transfers[k]
                .recipients
                .iter()
                .filter_map(|r| self.index(*r))
                .collect();
            let full = recipients.into_iter().any(|j| {
                let p = &mut self.participants[j];
                p.channel
                    .and_then(|c| p.rtc.channel(c))
                    .is_some_and(|mut ch| ch.buffered_amount() > ACK_HIGH)
            });
            let t = &self.transfers[k];
            if full || t.acked == t.next {
                k += 1;
                continue;
            }
            let (sender, sender_id, next, done) =
                (t.sender, t.sender_id, t.next, t.next == t.chunks);
            self.transfers[k].acked = next;
            if let Some(i) = self.index(sender) {
                self.channel_send(
                    i,
                    &ServerText::ImageAck {
                        id: sender_id,
                        received: next,
                    },
                );
            }
            if done {
                self.transfers.remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// A participant left: its transfers end, and it no longer receives others'.
    pub(super) fn channel_participant_left(&mut self, id: ParticipantId) {
        while let Some(k) = self.transfers.iter().position(|t| t.sender == id) {
            self.abort_transfer(k, "the sender left");
        }
        for t in &mut self.transfers {
            t.recipients.retain(|r| *r != id);
        }
    }

    fn abort_transfer(&mut self, k: usize, reason: &str) {
        let t = self.transfers.remove(k);
        let json = to_json(&ServerText::ImageAbort {
            id: t.relay_id,
            reason,
        });
        for r in t.recipients {
            if let Some(j) = self.index(r) {
                self.channel_write(j, false, json.as_bytes());
            }
        }
    }

    fn forbid(&mut self, i: usize, why: &str, id: Option<u32>) {
        self.channel_send(
            i,
            &ServerText::Error {
                code: "forbidden",
                message: why.into(),
                id,
            },
        );
    }

    fn channel_send(&mut self, i: usize, message: &ServerText) {
        let json = to_json(message);
        self.channel_write(i, false, json.as_bytes());
    }

    /// Writes to participant `j`'s channel; false if it has none open or its buffer is full.
    fn channel_write(&mut self, j: usize, binary: bool, data: &[u8]) -> bool {
        let p = &mut self.participants[j];
        let Some(mut ch) = p.channel.and_then(|c| p.rtc.channel(c)) else {
            return false;
        };
        let written = matches!(ch.write(binary, data), Ok(true));
        if written {
            self.drive(j);
        }
        written
    }
}

fn to_json(message: &ServerText) -> String {
    serde_json::to_string(message).expect("invariant: channel messages have string keys only")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_client_text() {
        let ok = |s: &str| parse_text(s.as_bytes()).unwrap();
        assert_eq!(
            ok(r#"{"t":"chat","text":"xin chào"}"#),
            ClientText::Chat {
                text: "xin chào".into()
            }
        );
        assert_eq!(
            ok(r#"{"t":"image_start","id":3,"file":"xray.png","mime":"image/png","size":5242880}"#),
            ClientText::ImageStart {
                id: 3,
                file: "xray.png".into(),
                mime: "image/png".into(),
                size: 5_242_880
            }
        );
        let long = format!(
            r#"{{"t":"chat","text":"{}"}}"#,
            "a".repeat(MAX_CHAT_CHARS + 1)
        );
        let too_big = format!(
            r#"{{"t":"image_start","id":1,"file":"a.png","mime":"image/png","size":{}}}"#,
            MAX_IMAGE_BYTES + 1
        );
        let cases: &[(&str, &str)] = &[
            ("not json", "invalid"),
            (r#"{"t":"dance"}"#, "invalid"),
            (r#"{"t":"chat","text":"   "}"#, "invalid"),
            (&long, "invalid"),
            (&too_big, "too_large"),
            (
                r#"{"t":"image_start","id":1,"file":"a.exe","mime":"application/x-msdownload","size":10}"#,
                "invalid",
            ),
            (
                r#"{"t":"image_start","id":1,"file":"","mime":"image/png","size":10}"#,
                "invalid",
            ),
            (
                r#"{"t":"image_start","id":1,"file":"a.png","mime":"image/png","size":0}"#,
                "too_large",
            ),
        ];
        for (text, code) in cases {
            assert_eq!(parse_text(text.as_bytes()).unwrap_err().0, *code, "{text}");
        }
    }

    #[test]
    fn chunks_cover_the_image_exactly() {
        let cases = [
            (1u64, 1u32, 1usize),
            (CHUNK as u64, 1, CHUNK),
            (CHUNK as u64 + 1, 2, 1),
            (5 * 1024 * 1024, 320, CHUNK),
            (MAX_IMAGE_BYTES, 1280, CHUNK),
        ];
        for (size, chunks, last) in cases {
            assert_eq!(chunk_count(size), chunks, "{size}");
            assert_eq!(chunk_len(size, chunks - 1), last, "{size}");
            let total: u64 = (0..chunks).map(|i| chunk_len(size, i) as u64).sum();
            assert_eq!(total, size);
        }
    }

    #[test]
    fn reads_chunk_headers() {
        assert_eq!(parse_header(&[0, 0, 0, 7, 0, 0, 1, 0, 42]), Some((7, 256)));
        assert_eq!(parse_header(&[0, 0, 0]), None);
    }
}
