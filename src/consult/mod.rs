//! Consults as the clinic sees them: created through the API by an operator, joined by signed
//! invite links, with an audit trail and a summary that outlive the process: SQLite on one
//! node (the default), PostgreSQL shared by several (`database_url`), behind one interface
//! (`backend::Backend`).
//!
//! The room and the registry use only this handle: verifying an invite at join, and
//! fire-and-forget records (audit events, participation) that never block the media task.
//!
//! INTERFACE CONTRACT (used by `registry.rs` and `room/`): keep these signatures.
//!
//! The database connection lives on one thread of its own (`store`); callers send it jobs
//! over a channel, so a slow disk or network never stalls a tokio worker or the media task.

mod backend;
mod database_url;
mod db;
mod migrations;
mod ops;
mod pending;
mod pg;
mod pg_schema;
pub mod random;
pub mod rfc3339;
mod sqlite;
mod store;
pub mod summary;
pub mod token;

use std::sync::Arc;
use std::time::SystemTime;

use signaling::Role;

pub use database_url::DatabaseUrl;
pub use db::{AuditRow, ConsultRow, InviteRow, ParticipationRow};
pub use migrations::MigrationError;
pub use ops::{now_unix, EndOutcome, IssuedInvite, NewConsult, NewParticipant};
pub use store::{StoreError, StoreOptions};

/// A verified invite: who may join which consult, as the signed token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub consult_id: String,
    /// The token id (`jti`): revoked when the participant is removed.
    pub token_id: String,
    pub name: String,
    pub role: Role,
    /// Wait in the lobby until a clinic operator or specialist admits.
    pub lobby: bool,
    pub title: String,
}

/// Why an invite token is refused. Each maps to a clear message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("the invite link is damaged (not a valid token)")]
    Malformed,
    #[error("the invite link was not issued by this server")]
    BadSignature,
    #[error("the invite link has expired")]
    Expired,
    #[error("the consult of this invite does not exist")]
    UnknownConsult,
    #[error("the consult has ended")]
    Ended,
    #[error("this invite has been withdrawn")]
    Revoked,
    #[error("the consult service is unavailable: {0}")]
    Store(String),
}

/// What happened in a consult, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Created,
    Invited,
    Joined,
    /// Entered the lobby (waiting to be admitted).
    Waiting,
    Admitted,
    Denied,
    Muted,
    Removed,
    Left,
    Ended,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Created => "created",
            AuditAction::Invited => "invited",
            AuditAction::Joined => "joined",
            AuditAction::Waiting => "waiting",
            AuditAction::Admitted => "admitted",
            AuditAction::Denied => "denied",
            AuditAction::Muted => "muted",
            AuditAction::Removed => "removed",
            AuditAction::Left => "left",
            AuditAction::Ended => "ended",
        }
    }
}

/// One audit row. `actor` did `action`, to `subject` where there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub consult_id: String,
    pub at: SystemTime,
    pub action: AuditAction,
    /// Display name of who did it (the operator's clinic name for API actions).
    pub actor: String,
    pub actor_role: Option<Role>,
    /// Display name of whom it was done to (admitted, denied, muted, removed).
    pub subject: Option<String>,
    pub detail: Option<String>,
}

/// One participant's time in a consult and the media quality they received, written when
/// they leave (or when the consult ends).
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipationRecord {
    pub consult_id: String,
    pub name: String,
    pub role: Role,
    pub joined_at: SystemTime,
    pub left_at: SystemTime,
    /// Median of the per-second receive bitrate over the time in the consult (all tracks).
    pub median_receive_bps: Option<u64>,
    /// Share of video-subscription time on the lowest layer (0..=1).
    pub low_layer_share: f64,
    /// Share of video-subscription time paused for bandwidth (0..=1).
    pub paused_share: f64,
    /// Packet loss this participant reported on what it received, in percent.
    pub loss_percent: f64,
}

/// Handle to the consult store. Cheap to clone.
#[derive(Clone)]
pub struct Consults {
    /// None: disabled (media tests), knows no consult.
    inner: Option<Arc<store::Shared>>,
}

impl Consults {
    /// A store that knows no consult (every invite is refused). For tests of the media path.
    pub fn disabled() -> Self {
        Consults { inner: None }
    }

    /// Opens (creating or migrating) the database and starts the store thread.
    pub async fn open(options: StoreOptions) -> Result<Self, StoreError> {
        let shared = store::Shared::start(options).await?;
        Ok(Consults {
            inner: Some(Arc::new(shared)),
        })
    }

    /// Checks the token's signature and expiry, then that its consult exists, has not ended
    /// and that the token was not revoked.
    pub async fn verify_invite(&self, token: &str) -> Result<Invite, InviteError> {
        let Some(shared) = &self.inner else {
            return Err(InviteError::UnknownConsult);
        };
        let now = rfc3339::unix_seconds(SystemTime::now());
        let claims = token::verify(token, &shared.secret, now).map_err(|e| match e {
            token::TokenError::Malformed => InviteError::Malformed,
            token::TokenError::UnsupportedAlgorithm | token::TokenError::BadSignature => {
                InviteError::BadSignature
            }
            token::TokenError::Expired => InviteError::Expired,
        })?;
        let (cid, jti) = (claims.cid.clone(), claims.jti.clone());
        let (consult, invite) = self
            .call(move |backend| Ok((backend.consult(&cid)?, backend.invite(&jti)?)))
            .await
            .map_err(|e| InviteError::Store(e.to_string()))?;
        check_invite(&claims, consult, invite)
    }

    /// Appends to the audit trail. Never blocks; errors are logged.
    pub fn audit(&self, event: AuditEvent) {
        self.fire("audit event", move |backend| backend.insert_audit(&event));
    }

    /// Records a participant's time and quality. Never blocks.
    pub fn record_participation(&self, record: ParticipationRecord) {
        self.fire("participation record", move |backend| {
            backend.insert_participation(&record)
        });
    }

    /// Withdraws an invite (the participant was removed): the token no longer joins.
    pub fn revoke(&self, token_id: &str) {
        let token_id = token_id.to_string();
        self.fire("revocation", move |backend| {
            if !backend.revoke(&token_id)? {
                tracing::warn!(token_id, "revoking an invite this store does not know");
            }
            Ok(())
        });
    }

    /// Marks a consult ended from inside the consult (the operator pressed "end"). Never
    /// blocks. The API's end goes through the store directly.
    pub fn end(&self, consult_id: &str, actor: &str, actor_role: Role) {
        let event = AuditEvent {
            consult_id: consult_id.to_string(),
            at: SystemTime::now(),
            action: AuditAction::Ended,
            actor: actor.to_string(),
            actor_role: Some(actor_role),
            subject: None,
            detail: None,
        };
        // Ended twice (the API and the room at once): one audit row (see `end_consult`).
        self.fire("end of consult", move |backend| {
            backend.end_consult(None, &event).map(|_| ())
        });
    }

    /// Waits until every job sent before this call has run (for shutdown and tests).
    pub async fn flush(&self) -> Result<(), StoreError> {
        if self.inner.is_none() {
            return Ok(());
        }
        self.flush_jobs().await
    }
}

/// What the database says about a validly signed token.
fn check_invite(
    claims: &token::Claims,
    consult: Option<ConsultRow>,
    invite: Option<InviteRow>,
) -> Result<Invite, InviteError> {
    let consult = consult.ok_or(InviteError::UnknownConsult)?;
    if consult.ended_at.is_some() {
        return Err(InviteError::Ended);
    }
    // Signed with our secret but unknown here (a restored or replaced database): this store
    // did not issue it.
    let invite = invite
        .filter(|i| i.consult_id == consult.id)
        .ok_or(InviteError::BadSignature)?;
    // The row and the signed claims were written together; a difference means the token
    // was made with our secret by someone else.
    if (&invite.name, invite.role, invite.lobby) != (&claims.name, claims.role, claims.lobby) {
        return Err(InviteError::BadSignature);
    }
    if invite.revoked {
        return Err(InviteError::Revoked);
    }
    Ok(Invite {
        consult_id: consult.id,
        token_id: invite.token_id,
        name: invite.name,
        role: invite.role,
        lobby: invite.lobby,
        title: consult.title,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> token::Claims {
        token::Claims {
            cid: "c-aaaaaaaaaa".into(),
            name: "Lan".into(),
            role: Role::Patient,
            lobby: true,
            iat: 0,
            exp: 100,
            jti: "t1".into(),
        }
    }

    fn consult(ended: bool) -> ConsultRow {
        ConsultRow {
            id: "c-aaaaaaaaaa".into(),
            clinic: "A".into(),
            title: "Follow-up".into(),
            scheduled_at: None,
            created_at: 0,
            ended_at: ended.then_some(50),
        }
    }

    fn invite(consult_id: &str, revoked: bool) -> InviteRow {
        InviteRow {
            token_id: "t1".into(),
            consult_id: consult_id.into(),
            name: "Lan".into(),
            role: Role::Patient,
            lobby: true,
            issued_at: 0,
            expires_at: 100,
            revoked,
        }
    }

    #[test]
    fn database_checks_after_the_signature() {
        let ok = Invite {
            consult_id: "c-aaaaaaaaaa".into(),
            token_id: "t1".into(),
            name: "Lan".into(),
            role: Role::Patient,
            lobby: true,
            title: "Follow-up".into(),
        };
        let cases = [
            (
                "valid",
                Some(consult(false)),
                Some(invite("c-aaaaaaaaaa", false)),
                Ok(ok),
            ),
            (
                "no consult",
                None,
                Some(invite("c-aaaaaaaaaa", false)),
                Err(InviteError::UnknownConsult),
            ),
            (
                "ended",
                Some(consult(true)),
                Some(invite("c-aaaaaaaaaa", false)),
                Err(InviteError::Ended),
            ),
            (
                "revoked",
                Some(consult(false)),
                Some(invite("c-aaaaaaaaaa", true)),
                Err(InviteError::Revoked),
            ),
            (
                "jti unknown",
                Some(consult(false)),
                None,
                Err(InviteError::BadSignature),
            ),
            (
                "jti of another consult",
                Some(consult(false)),
                Some(invite("c-bbbbbbbbbb", false)),
                Err(InviteError::BadSignature),
            ),
        ];
        for (what, c, i, want) in cases {
            assert_eq!(check_invite(&claims(), c, i), want, "{what}");
        }
        let mut promoted = claims();
        promoted.role = Role::Clinic;
        assert_eq!(
            check_invite(
                &promoted,
                Some(consult(false)),
                Some(invite("c-aaaaaaaaaa", false))
            ),
            Err(InviteError::BadSignature),
            "claims that differ from the issued row"
        );
    }
}
