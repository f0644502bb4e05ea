//! The API's JSON: requests with their validation (pure), and responses.

use serde::{Deserialize, Serialize};
use signaling::Role;

use super::error::ApiError;
use crate::consult::rfc3339;
use crate::consult::summary::Summary;
use crate::consult::{AuditRow, ConsultRow, IssuedInvite, NewConsult, NewParticipant};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_NAME_CHARS: usize = signaling::protocol::MAX_NAME_CHARS;
/// Invites per consult: a room holds at most 8.
pub const MAX_PARTICIPANTS: usize = 8;
pub const MAX_EXPIRES_IN_HOURS: u64 = 168;
pub const DEFAULT_EXPIRES_IN_HOURS: u64 = 24;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConsult {
    pub title: String,
    #[serde(default)]
    pub scheduled_at: Option<String>,
    #[serde(default)]
    pub expires_in_hours: Option<u64>,
    pub participants: Vec<ParticipantRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantRequest {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub lobby: Option<bool>,
}

/// A display text: trimmed, 1 to `max` characters, no control characters (they break the
/// UI and the audit export).
fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    let chars = v.chars().count();
    if chars == 0 || chars > max {
        return Err(ApiError::invalid(
            field,
            format!("must be 1 to {max} characters, got {chars}"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

impl CreateConsult {
    /// Checks every field; adds the operator's own `clinic` invite when none is listed.
    pub fn validate(self, clinic: &str) -> Result<NewConsult, ApiError> {
        let title = text("title", &self.title, MAX_TITLE_CHARS)?;
        let scheduled_at = self
            .scheduled_at
            .map(|s| {
                rfc3339::parse(&s).ok_or_else(|| {
                    ApiError::invalid(
                        "scheduled_at",
                        format!("{s:?} is not an RFC 3339 time like 2026-03-01T09:30:00+07:00"),
                    )
                })
            })
            .transpose()?;
        let hours = self.expires_in_hours.unwrap_or(DEFAULT_EXPIRES_IN_HOURS);
        if !(1..=MAX_EXPIRES_IN_HOURS).contains(&hours) {
            return Err(ApiError::invalid(
                "expires_in_hours",
                format!("must be 1 to {MAX_EXPIRES_IN_HOURS}, got {hours}"),
            ));
        }
        if self.participants.is_empty() || self.participants.len() > MAX_PARTICIPANTS {
            return Err(ApiError::invalid(
                "participants",
                format!(
                    "list 1 to {MAX_PARTICIPANTS} participants, got {}",
                    self.participants.len()
                ),
            ));
        }
        let mut participants: Vec<NewParticipant> = Vec::with_capacity(self.participants.len());
        for (i, p) in self.participants.into_iter().enumerate() {
            let name = text(&format!("participants[{i}].name"), &p.name, MAX_NAME_CHARS)?;
            if participants
                .iter()
                .any(|q| q.name.to_lowercase() == name.to_lowercase())
            {
                return Err(ApiError::invalid(
                    &format!("participants[{i}].name"),
                    format!("{name:?} is listed twice; names tell participants apart"),
                ));
            }
            participants.push(NewParticipant {
                name,
                role: p.role,
                // A patient waits to be admitted unless the operator says otherwise.
                lobby: p.lobby.unwrap_or(p.role == Role::Patient),
            });
        }
        if !participants.iter().any(|p| p.role == Role::Clinic) {
            if participants.len() == MAX_PARTICIPANTS {
                return Err(ApiError::invalid(
                    "participants",
                    format!(
                        "{MAX_PARTICIPANTS} listed and none is the clinic; the clinic's own \
                         invite would make {}: list at most {} others, or list the clinic",
                        MAX_PARTICIPANTS + 1,
                        MAX_PARTICIPANTS - 1
                    ),
                ));
            }
            participants.insert(
                0,
                NewParticipant {
                    name: clinic.to_string(),
                    role: Role::Clinic,
                    lobby: false,
                },
            );
        }
        Ok(NewConsult {
            clinic: clinic.to_string(),
            title,
            scheduled_at,
            expires_in_s: i64::try_from(hours * 3600).unwrap_or(i64::MAX),
            participants,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ConsultJson {
    pub id: String,
    pub clinic: String,
    pub title: String,
    pub scheduled_at: Option<String>,
    pub created_at: String,
    pub ended_at: Option<String>,
    /// `open` or `ended`.
    pub status: &'static str,
}

impl From<&ConsultRow> for ConsultJson {
    fn from(c: &ConsultRow) -> Self {
        ConsultJson {
            id: c.id.clone(),
            clinic: c.clinic.clone(),
            title: c.title.clone(),
            scheduled_at: c.scheduled_at.map(rfc3339::format),
            created_at: rfc3339::format(c.created_at),
            ended_at: c.ended_at.map(rfc3339::format),
            status: if c.ended_at.is_some() {
                "ended"
            } else {
                "open"
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct InviteJson {
    pub name: String,
    pub role: Role,
    pub lobby: bool,
    pub token_id: String,
    pub expires_at: String,
    pub revoked: bool,
    pub link: String,
}

impl InviteJson {
    pub fn new(invite: &IssuedInvite, link: String) -> Self {
        let r = &invite.row;
        InviteJson {
            name: r.name.clone(),
            role: r.role,
            lobby: r.lobby,
            token_id: r.token_id.clone(),
            expires_at: rfc3339::format(r.expires_at),
            revoked: r.revoked,
            link,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AuditJson {
    pub at: String,
    pub action: String,
    pub actor: String,
    pub actor_role: Option<String>,
    pub subject: Option<String>,
    pub detail: Option<String>,
}

impl From<AuditRow> for AuditJson {
    fn from(a: AuditRow) -> Self {
        AuditJson {
            at: rfc3339::format(a.at),
            action: a.action,
            actor: a.actor,
            actor_role: a.actor_role,
            subject: a.subject,
            detail: a.detail,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SummaryJson {
    pub consult: ConsultJson,
    pub duration_s: Option<i64>,
    pub participants: Vec<ParticipantSummaryJson>,
}

#[derive(Debug, Serialize)]
pub struct ParticipantSummaryJson {
    pub name: String,
    pub role: Role,
    pub seconds: i64,
    pub joined_at: String,
    pub left_at: String,
    pub median_receive_kbps: Option<f64>,
    pub low_layer_share: f64,
    pub paused_share: f64,
    pub loss_percent: f64,
}

impl SummaryJson {
    pub fn new(consult: &ConsultRow, summary: Summary) -> Self {
        SummaryJson {
            consult: consult.into(),
            duration_s: summary.duration_s,
            participants: summary
                .participants
                .into_iter()
                .map(|p| ParticipantSummaryJson {
                    name: p.name,
                    role: p.role,
                    seconds: p.seconds,
                    joined_at: rfc3339::format(p.joined_at),
                    left_at: rfc3339::format(p.left_at),
                    median_receive_kbps: p.median_receive_kbps,
                    low_layer_share: p.low_layer_share,
                    paused_share: p.paused_share,
                    loss_percent: p.loss_percent,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> CreateConsult {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_clinic_invite_is_added_and_patients_wait() {
        let c = request(
            r#"{"title":" Follow-up ","participants":[{"name":"Dr Lan","role":"specialist"},{"name":"An","role":"patient"}]}"#,
        )
        .validate("Tram y te Xa A")
        .unwrap();
        assert_eq!(c.title, "Follow-up");
        assert_eq!(c.expires_in_s, 24 * 3600);
        let got: Vec<(&str, Role, bool)> = c
            .participants
            .iter()
            .map(|p| (p.name.as_str(), p.role, p.lobby))
            .collect();
        assert_eq!(
            got,
            [
                ("Tram y te Xa A", Role::Clinic, false),
                ("Dr Lan", Role::Specialist, false),
                ("An", Role::Patient, true),
            ]
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let p = |n: usize| {
            (0..n)
                .map(|i| format!(r#"{{"name":"P{i}","role":"patient"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        };
        let cases = [
            (format!(r#"{{"title":"","participants":[{}]}}"#, p(1)), "title: must be 1 to 200"),
            (format!(r#"{{"title":"{}","participants":[{}]}}"#, "x".repeat(201), p(1)), "title"),
            (format!(r#"{{"title":"a\u0007","participants":[{}]}}"#, p(1)), "title: must not contain control"),
            (r#"{"title":"t","participants":[]}"#.to_string(), "participants: list 1 to 8"),
            (format!(r#"{{"title":"t","participants":[{}]}}"#, p(9)), "participants: list 1 to 8 participants, got 9"),
            (format!(r#"{{"title":"t","participants":[{}]}}"#, p(8)), "none is the clinic"),
            (format!(r#"{{"title":"t","expires_in_hours":0,"participants":[{}]}}"#, p(1)), "expires_in_hours"),
            (format!(r#"{{"title":"t","expires_in_hours":169,"participants":[{}]}}"#, p(1)), "expires_in_hours: must be 1 to 168"),
            (format!(r#"{{"title":"t","scheduled_at":"tomorrow","participants":[{}]}}"#, p(1)), "scheduled_at"),
            (r#"{"title":"t","participants":[{"name":" ","role":"patient"}]}"#.to_string(), "participants[0].name"),
            (format!(r#"{{"title":"t","participants":[{{"name":"{}","role":"patient"}}]}}"#, "n".repeat(65)), "participants[0].name: must be 1 to 64"),
            (r#"{"title":"t","participants":[{"name":"An","role":"patient"},{"name":"an","role":"observer"}]}"#.to_string(), "participants[1].name: \"an\" is listed twice"),
        ];
        for (json, want) in cases {
            let err = request(&json).validate("Clinic").unwrap_err();
            assert_eq!(err.code, "invalid_request", "{json}");
            assert!(
                err.message.contains(want),
                "{json}: {} should mention {want}",
                err.message
            );
        }
    }

    #[test]
    fn eight_with_a_clinic_is_fine() {
        let mut list: Vec<String> = (0..7)
            .map(|i| format!(r#"{{"name":"P{i}","role":"patient"}}"#))
            .collect();
        list.push(r#"{"name":"Nurse","role":"clinic"}"#.into());
        let json = format!(r#"{{"title":"t","participants":[{}]}}"#, list.join(","));
        let c = request(&json).validate("Clinic").unwrap();
        assert_eq!(c.participants.len(), 8);
        assert_eq!(c.participants[7].name, "Nurse", "no extra clinic invite");
    }
}
