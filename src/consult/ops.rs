//! What the operator API does with the store. Times are arguments (unix seconds).

use std::time::SystemTime;

use signaling::Role;

use super::backend::Backend;
use super::db::{AuditRow, ConsultRow, InviteRow, ParticipationRow};
use super::token::{self, Claims};
use super::{random, rfc3339, AuditAction, AuditEvent, Consults, StoreError};

/// A consult to create; already validated by the API.
#[derive(Debug, Clone)]
pub struct NewConsult {
    pub clinic: String,
    pub title: String,
    pub scheduled_at: Option<i64>,
    /// How long the invite links stay valid, in seconds.
    pub expires_in_s: i64,
    pub participants: Vec<NewParticipant>,
}

#[derive(Debug, Clone)]
pub struct NewParticipant {
    pub name: String,
    pub role: Role,
    pub lobby: bool,
}

/// An invite row with its signed token.
#[derive(Debug, Clone)]
pub struct IssuedInvite {
    pub row: InviteRow,
    pub token: String,
}

#[derive(Debug)]
pub enum EndOutcome {
    Ended(ConsultRow),
    AlreadyEnded,
    NotFound,
}

impl Consults {
    /// Stores the consult, its invites and the `created` and `invited` audit rows in one
    /// transaction.
    pub async fn create(
        &self,
        new: NewConsult,
        now: i64,
    ) -> Result<(ConsultRow, Vec<IssuedInvite>), StoreError> {
        let consult = ConsultRow {
            id: random::consult_id(),
            clinic: new.clinic.clone(),
            title: new.title,
            scheduled_at: new.scheduled_at,
            created_at: now,
            ended_at: None,
        };
        let invites: Vec<InviteRow> = new
            .participants
            .iter()
            .map(|p| InviteRow {
                token_id: random::token_id(),
                consult_id: consult.id.clone(),
                name: p.name.clone(),
                role: p.role,
                lobby: p.lobby,
                issued_at: now,
                expires_at: now + new.expires_in_s,
                revoked: false,
            })
            .collect();
        let event = |action, subject: Option<&str>, detail: Option<&str>| AuditEvent {
            consult_id: consult.id.clone(),
            at: rfc3339::system_time(now),
            action,
            actor: new.clinic.clone(),
            actor_role: Some(Role::Clinic),
            subject: subject.map(String::from),
            detail: detail.map(String::from),
        };
        let mut events = vec![event(AuditAction::Created, None, None)];
        events.extend(
            invites
                .iter()
                .map(|i| event(AuditAction::Invited, Some(&i.name), Some(i.role.as_str()))),
        );
        let issued = self.issue(&invites)?;
        let row = consult.clone();
        self.call(move |backend| backend.insert_consult(&row, &invites, &events))
            .await?;
        Ok((consult, issued))
    }

    /// The clinic's consults, newest first.
    pub async fn list(&self, clinic: &str, limit: u32) -> Result<Vec<ConsultRow>, StoreError> {
        let clinic = clinic.to_string();
        self.call(move |backend| backend.list_consults(&clinic, limit))
            .await
    }

    /// The consult and its invites, if it exists and belongs to `clinic`.
    pub async fn get(
        &self,
        clinic: &str,
        id: &str,
    ) -> Result<Option<(ConsultRow, Vec<IssuedInvite>)>, StoreError> {
        let found = self.owned(clinic, id, |b, id| b.invites(id)).await?;
        found
            .map(|(consult, invites)| Ok((consult, self.issue(&invites)?)))
            .transpose()
    }

    /// Ends the consult for the operator of `clinic`; writes the `ended` audit row.
    pub async fn end_by_operator(
        &self,
        clinic: &str,
        id: &str,
        now: i64,
    ) -> Result<EndOutcome, StoreError> {
        let clinic = clinic.to_string();
        let ended = AuditEvent {
            consult_id: id.to_string(),
            at: rfc3339::system_time(now),
            action: AuditAction::Ended,
            actor: clinic.clone(),
            actor_role: Some(Role::Clinic),
            subject: None,
            detail: Some("through the operator API".into()),
        };
        self.call(move |backend| backend.end_consult(Some(&clinic), &ended))
            .await
    }

    /// The audit trail, oldest first, if the consult belongs to `clinic`.
    pub async fn audit_trail(
        &self,
        clinic: &str,
        id: &str,
    ) -> Result<Option<(ConsultRow, Vec<AuditRow>)>, StoreError> {
        self.owned(clinic, id, |b, id| b.audit_events(id)).await
    }

    /// The participation records, if the consult belongs to `clinic`.
    pub async fn participation(
        &self,
        clinic: &str,
        id: &str,
    ) -> Result<Option<(ConsultRow, Vec<ParticipationRow>)>, StoreError> {
        self.owned(clinic, id, |b, id| b.participation(id)).await
    }

    /// The consult and `more(consult id)`, or None when it does not exist or belongs to
    /// another clinic (the two are indistinguishable to the caller on purpose).
    async fn owned<T: Send + 'static>(
        &self,
        clinic: &str,
        id: &str,
        more: impl FnOnce(&mut dyn Backend, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Option<(ConsultRow, T)>, StoreError> {
        let (clinic, id) = (clinic.to_string(), id.to_string());
        self.call(move |backend| {
            let Some(consult) = backend.consult(&id)?.filter(|c| c.clinic == clinic) else {
                return Ok(None);
            };
            let extra = more(backend, &id)?;
            Ok(Some((consult, extra)))
        })
        .await
    }

    /// Signs each invite's token. The claims are all in the row, so a link shown again later
    /// is the same link.
    fn issue(&self, invites: &[InviteRow]) -> Result<Vec<IssuedInvite>, StoreError> {
        let secret = self.secret()?;
        Ok(invites
            .iter()
            .map(|row| IssuedInvite {
                token: token::sign(
                    &Claims {
                        cid: row.consult_id.clone(),
                        name: row.name.clone(),
                        role: row.role,
                        lobby: row.lobby,
                        iat: row.issued_at,
                        exp: row.expires_at,
                        jti: row.token_id.clone(),
                    },
                    secret,
                ),
                row: row.clone(),
            })
            .collect())
    }
}

/// Now, in the store's unit (the IO shell's clock; pure code takes it as an argument).
pub fn now_unix() -> i64 {
    rfc3339::unix_seconds(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consult::{InviteError, StoreOptions};

    async fn open(dir: &std::path::Path) -> Consults {
        Consults::open(StoreOptions {
            db_path: dir.join("consults.sqlite"),
            database_url: None,
            token_secret: None,
            public_url: "https://consult.example".into(),
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn ended_once_whoever_ends_it() {
        let dir = std::env::temp_dir().join(format!("consult-ops-{}", random::token_id()));
        let consults = open(&dir).await;
        let new = NewConsult {
            clinic: "A".into(),
            title: "Follow-up".into(),
            scheduled_at: None,
            expires_in_s: 3600,
            participants: vec![NewParticipant {
                name: "Dr Lan".into(),
                role: Role::Specialist,
                lobby: false,
            }],
        };
        let now = now_unix();
        let (consult, invites) = consults.create(new, now).await.unwrap();
        assert!(invites[0]
            .token
            .starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
        assert_eq!(
            consults.invite_link(&invites[0].token),
            format!("https://consult.example/?invite={}", invites[0].token)
        );

        // The room's end twice (fire and forget), then the API's: one `ended` row.
        consults.end(&consult.id, "Dr Lan", Role::Specialist);
        consults.end(&consult.id, "Dr Lan", Role::Specialist);
        let outcome = consults
            .end_by_operator("A", &consult.id, now)
            .await
            .unwrap();
        assert!(matches!(outcome, EndOutcome::AlreadyEnded), "{outcome:?}");
        let (_, events) = consults
            .audit_trail("A", &consult.id)
            .await
            .unwrap()
            .unwrap();
        let ended: Vec<&AuditRow> = events.iter().filter(|e| e.action == "ended").collect();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].actor, "Dr Lan");
        assert_eq!(ended[0].actor_role.as_deref(), Some("specialist"));
        assert_eq!(
            consults.verify_invite(&invites[0].token).await,
            Err(InviteError::Ended)
        );
        // Another clinic: as if it did not exist.
        assert!(consults.get("B", &consult.id).await.unwrap().is_none());
        assert!(matches!(
            consults.end_by_operator("B", &consult.id, now).await,
            Ok(EndOutcome::NotFound)
        ));
        drop(consults);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn disabled_store_refuses_every_invite() {
        let consults = Consults::disabled();
        assert_eq!(
            consults.verify_invite("a.b.c").await,
            Err(InviteError::UnknownConsult)
        );
        consults.audit(AuditEvent {
            consult_id: "c-x".into(),
            at: SystemTime::now(),
            action: AuditAction::Joined,
            actor: "x".into(),
            actor_role: None,
            subject: None,
            detail: None,
        });
        consults.flush().await.unwrap();
    }
}
