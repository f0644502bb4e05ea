//! The same store tests against both backends: SQLite (a temp file) and a real PostgreSQL
//! this test starts itself (Debian's `postgresql`: `initdb` and `pg_ctl` in a fresh temp
//! folder, listening only on a unix socket there; stopped and removed by a drop guard, also
//! when a case fails). Each case gets a fresh database. PostgreSQL only: several nodes
//! opening one database at once (one invite secret for all), and a server that stops and
//! comes back (errors, not panics; the next job connects again).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use consult_sfu::consult::token::{self, Claims};
use consult_sfu::consult::{
    AuditAction, AuditEvent, Consults, DatabaseUrl, EndOutcome, InviteError, NewConsult,
    NewParticipant, ParticipationRecord, StoreError, StoreOptions,
};
use signaling::Role;

#[path = "../common/mod.rs"]
mod common;
mod pg_server;

use pg_server::Postgres;

type Case = fn(StoreOptions) -> Pin<Box<dyn Future<Output = ()>>>;

/// Run against both backends.
const CASES: &[(&str, Case)] = &[
    ("consults are created, read and listed", |o| {
        Box::pin(consults_created_read_listed(o))
    }),
    ("invites verify until revoked", |o| {
        Box::pin(invites_verify_until_revoked(o))
    }),
    ("a consult ends once", |o| Box::pin(a_consult_ends_once(o))),
    ("audit events come back in order", |o| {
        Box::pin(audit_events_in_order(o))
    }),
    ("participation records come back", |o| {
        Box::pin(participation_records(o))
    }),
    ("flushed records survive a reopen", |o| {
        Box::pin(flushed_records_survive_a_reopen(o))
    }),
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Each case on a fresh store from `fresh(case index)`, outside the runtime (the sync
/// PostgreSQL client that makes databases runs its own).
fn run_cases(backend: &str, rt: &tokio::runtime::Runtime, fresh: impl Fn(usize) -> StoreOptions) {
    for (i, (name, case)) in CASES.iter().enumerate() {
        let options = fresh(i);
        let started = Instant::now();
        rt.block_on(case(options));
        eprintln!("{backend}: {name}: ok in {:?}", started.elapsed());
    }
}

#[test]
fn sqlite_backend() {
    let dir = common::temp_dir("store-sqlite");
    let rt = runtime();
    run_cases("sqlite", &rt, |i| StoreOptions {
        db_path: dir.join(format!("case-{i}")).join("consults.sqlite"),
        database_url: None,
        token_secret: None,
        public_url: "https://consult.example".into(),
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn postgres_backend() {
    let started = Instant::now();
    let mut pg = Postgres::start();
    eprintln!("postgres: started in {:?}", started.elapsed());
    let rt = runtime();
    run_cases("postgres", &rt, |i| pg.fresh(&format!("case_{i}")));

    let t = Instant::now();
    let options = pg.fresh("nodes");
    rt.block_on(nodes_opening_at_once_share_one_secret(options));
    eprintln!("postgres: nodes opening at once: ok in {:?}", t.elapsed());

    let options = pg.fresh("newer");
    drop(rt.block_on(Consults::open(options.clone())).unwrap());
    pg.sql("newer", "UPDATE consult_schema_version SET version = 99");
    let err = rt.block_on(Consults::open(options)).err().unwrap();
    assert!(
        err.to_string().contains("schema version 99, newer than"),
        "{err}"
    );

    let t = Instant::now();
    let options = pg.fresh("outage");
    let consults = rt.block_on(Consults::open(options)).unwrap();
    let (consult, invite) = rt.block_on(create_one(&consults, "A"));
    // A restart between two jobs: the next job finds its connection dead and retries once.
    pg.stop();
    pg.start_again();
    let listed = rt.block_on(consults.list("A", 10)).unwrap();
    assert_eq!(
        listed,
        std::slice::from_ref(&consult),
        "after a restart between jobs"
    );

    pg.stop();
    rt.block_on(async {
        let err = consults.list("A", 10).await.unwrap_err();
        assert!(
            matches!(err, StoreError::PgConnect { .. }),
            "a stopped server: {err}"
        );
        let shown = err.to_string();
        assert!(
            shown.contains("cannot connect to the consult database postgres://consult@/outage")
                && shown.contains("error connecting to server: "),
            "the URL and the cause: {shown}"
        );
        assert!(
            matches!(
                consults.verify_invite(&invite).await,
                Err(InviteError::Store(_))
            ),
            "an invite cannot be checked"
        );
        // Fire-and-forget writes are kept, in order, while the database is away.
        consults.audit(event(&consult.id, AuditAction::Joined, "Lan"));
        consults.audit(event(&consult.id, AuditAction::Left, "Lan"));
        consults.flush().await.unwrap();
    });
    pg.start_again();
    rt.block_on(async {
        assert!(
            consults.verify_invite(&invite).await.is_ok(),
            "the next job connects again"
        );
        consults.flush().await.unwrap();
        let (_, trail) = consults
            .audit_trail("A", &consult.id)
            .await
            .unwrap()
            .unwrap();
        let lan: Vec<&str> = trail
            .iter()
            .filter(|e| e.actor == "Lan")
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(
            lan,
            ["joined", "left"],
            "written after the outage, in order: {trail:?}"
        );
    });
    drop(consults);
    eprintln!("postgres: outage: ok in {:?}", t.elapsed());
    drop(pg);
    eprintln!("postgres: all in {:?}", started.elapsed());
}

fn participant(name: &str, role: Role, lobby: bool) -> NewParticipant {
    NewParticipant {
        name: name.into(),
        role,
        lobby,
    }
}

fn new_consult(clinic: &str, title: &str) -> NewConsult {
    NewConsult {
        clinic: clinic.into(),
        title: title.into(),
        scheduled_at: Some(1_900_000_000),
        expires_in_s: 3600,
        participants: vec![
            participant("Dr Minh", Role::Specialist, false),
            participant("Lan", Role::Patient, true),
        ],
    }
}

/// A consult of `clinic` and the patient's invite token.
async fn create_one(
    consults: &Consults,
    clinic: &str,
) -> (consult_sfu::consult::ConsultRow, String) {
    let (row, invites) = consults
        .create(new_consult(clinic, "Follow-up"), now())
        .await
        .unwrap();
    (row, invites[1].token.clone())
}

fn now() -> i64 {
    consult_sfu::consult::now_unix()
}

fn event(consult_id: &str, action: AuditAction, actor: &str) -> AuditEvent {
    AuditEvent {
        consult_id: consult_id.into(),
        at: SystemTime::now(),
        action,
        actor: actor.into(),
        actor_role: Some(Role::Clinic),
        subject: None,
        detail: None,
    }
}

async fn consults_created_read_listed(options: StoreOptions) {
    let consults = Consults::open(options).await.unwrap();
    let t = now();
    let (first, _) = consults.create(new_consult("A", "First"), t).await.unwrap();
    let (second, issued) = consults
        .create(new_consult("A", "Second"), t)
        .await
        .unwrap();
    consults
        .create(new_consult("B", "Other clinic"), t)
        .await
        .unwrap();
    assert_eq!(second.title, "Second");
    assert_eq!(second.created_at, t);
    assert_eq!(second.ended_at, None);

    // Newest first; the same second: the later one first.
    let listed = consults.list("A", 10).await.unwrap();
    assert_eq!(listed, [second.clone(), first.clone()]);
    assert_eq!(
        consults.list("A", 1).await.unwrap(),
        std::slice::from_ref(&second)
    );
    assert!(consults.list("C", 10).await.unwrap().is_empty());

    let (row, invites) = consults.get("A", &second.id).await.unwrap().unwrap();
    assert_eq!(row, second);
    let names: Vec<&str> = invites.iter().map(|i| i.row.name.as_str()).collect();
    assert_eq!(names, ["Dr Minh", "Lan"], "in the order given");
    assert_eq!(invites[1].row.role, Role::Patient);
    assert!(invites[1].row.lobby);
    assert_eq!(invites[1].row.expires_at, t + 3600);
    // The same links as at creation.
    let tokens: Vec<&str> = invites.iter().map(|i| i.token.as_str()).collect();
    let created: Vec<&str> = issued.iter().map(|i| i.token.as_str()).collect();
    assert_eq!(tokens, created);

    assert!(consults.get("B", &second.id).await.unwrap().is_none());
    assert!(consults.get("A", "c-nosuchthing").await.unwrap().is_none());
}

async fn invites_verify_until_revoked(options: StoreOptions) {
    let consults = Consults::open(options).await.unwrap();
    let (consult, issued) = consults
        .create(new_consult("A", "Follow-up"), now())
        .await
        .unwrap();
    let (doctor, patient) = (&issued[0], &issued[1]);

    let invite = consults.verify_invite(&patient.token).await.unwrap();
    assert_eq!(invite.consult_id, consult.id);
    assert_eq!(invite.token_id, patient.row.token_id);
    assert_eq!(invite.name, "Lan");
    assert_eq!(invite.role, Role::Patient);
    assert!(invite.lobby);
    assert_eq!(invite.title, "Follow-up");

    consults.revoke(&patient.row.token_id);
    consults.revoke("t-unknown"); // logged, not an error
    consults.flush().await.unwrap();
    assert_eq!(
        consults.verify_invite(&patient.token).await,
        Err(InviteError::Revoked)
    );
    assert!(consults.verify_invite(&doctor.token).await.is_ok());

    let forged = token::sign(
        &Claims {
            cid: consult.id.clone(),
            name: "Lan".into(),
            role: Role::Clinic,
            lobby: false,
            iat: now(),
            exp: now() + 60,
            jti: patient.row.token_id.clone(),
        },
        b"not-the-secret-of-this-store-at-all",
    );
    assert_eq!(
        consults.verify_invite(&forged).await,
        Err(InviteError::BadSignature)
    );
    assert_eq!(
        consults.verify_invite("not.a.token").await,
        Err(InviteError::Malformed)
    );
}

async fn a_consult_ends_once(options: StoreOptions) {
    let consults = Consults::open(options).await.unwrap();
    let (consult, invite) = create_one(&consults, "A").await;
    // The room's end twice (fire and forget), then the API's.
    consults.end(&consult.id, "Dr Minh", Role::Specialist);
    consults.end(&consult.id, "Dr Minh", Role::Specialist);
    let outcome = consults
        .end_by_operator("A", &consult.id, now())
        .await
        .unwrap();
    assert!(matches!(outcome, EndOutcome::AlreadyEnded), "{outcome:?}");
    let (row, events) = consults
        .audit_trail("A", &consult.id)
        .await
        .unwrap()
        .unwrap();
    assert!(row.ended_at.is_some());
    let ended: Vec<_> = events.iter().filter(|e| e.action == "ended").collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].actor, "Dr Minh");
    assert_eq!(ended[0].actor_role.as_deref(), Some("specialist"));
    assert_eq!(
        consults.verify_invite(&invite).await,
        Err(InviteError::Ended)
    );

    let (other, _) = create_one(&consults, "A").await;
    assert!(matches!(
        consults.end_by_operator("B", &other.id, now()).await,
        Ok(EndOutcome::NotFound)
    ));
    let t = now();
    match consults.end_by_operator("A", &other.id, t).await.unwrap() {
        EndOutcome::Ended(row) => assert_eq!(row.ended_at, Some(t)),
        outcome => panic!("{outcome:?}"),
    }
    let (_, events) = consults.audit_trail("A", &other.id).await.unwrap().unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.actor.as_str(), last.at),
        ("ended", "A", t)
    );
    assert_eq!(last.detail.as_deref(), Some("through the operator API"));
}

async fn audit_events_in_order(options: StoreOptions) {
    let consults = Consults::open(options).await.unwrap();
    let (consult, _) = create_one(&consults, "A").await;
    let actions = [
        AuditAction::Waiting,
        AuditAction::Admitted,
        AuditAction::Joined,
        AuditAction::Muted,
        AuditAction::Left,
    ];
    for round in 0..10 {
        for action in actions {
            consults.audit(AuditEvent {
                subject: Some(format!("Lan {round}")),
                detail: (action == AuditAction::Muted).then(|| "audio".to_string()),
                actor_role: Some(Role::Specialist),
                ..event(&consult.id, action, "Dr Minh")
            });
        }
    }
    consults.flush().await.unwrap();
    let (_, events) = consults
        .audit_trail("A", &consult.id)
        .await
        .unwrap()
        .unwrap();
    let got: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let mut want = vec!["created", "invited", "invited"];
    for _ in 0..10 {
        want.extend(actions.iter().map(|a| a.as_str()));
    }
    assert_eq!(got, want);
    assert_eq!(events[1].subject.as_deref(), Some("Dr Minh"));
    assert_eq!(events[1].detail.as_deref(), Some("specialist"));
    let muted = &events[3 + 3];
    assert_eq!(muted.action, "muted");
    assert_eq!(muted.subject.as_deref(), Some("Lan 0"));
    assert_eq!(muted.detail.as_deref(), Some("audio"));
    assert_eq!(muted.actor_role.as_deref(), Some("specialist"));
    assert_eq!(events.last().unwrap().subject.as_deref(), Some("Lan 9"));
    assert!(consults
        .audit_trail("B", &consult.id)
        .await
        .unwrap()
        .is_none());
}

async fn participation_records(options: StoreOptions) {
    let consults = Consults::open(options).await.unwrap();
    let (consult, _) = create_one(&consults, "A").await;
    let joined = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let records = [
        ParticipationRecord {
            consult_id: consult.id.clone(),
            name: "Lan".into(),
            role: Role::Patient,
            joined_at: joined,
            left_at: joined + Duration::from_secs(600),
            median_receive_bps: Some(412_000),
            low_layer_share: 0.25,
            paused_share: 0.0,
            loss_percent: 1.5,
        },
        ParticipationRecord {
            consult_id: consult.id.clone(),
            name: "Dr Minh".into(),
            role: Role::Specialist,
            joined_at: joined,
            left_at: joined + Duration::from_secs(900),
            median_receive_bps: None,
            low_layer_share: 0.0,
            paused_share: 0.125,
            loss_percent: 0.0,
        },
    ];
    for r in &records {
        consults.record_participation(r.clone());
    }
    consults.flush().await.unwrap();
    let (_, rows) = consults
        .participation("A", &consult.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name, "Lan");
    assert_eq!(rows[0].role, Role::Patient);
    assert_eq!(rows[0].joined_at, 1_800_000_000);
    assert_eq!(rows[0].left_at, 1_800_000_600);
    assert_eq!(rows[0].median_receive_bps, Some(412_000));
    assert_eq!(
        (
            rows[0].low_layer_share,
            rows[0].paused_share,
            rows[0].loss_percent
        ),
        (0.25, 0.0, 1.5)
    );
    assert_eq!(rows[1].name, "Dr Minh");
    assert_eq!(rows[1].median_receive_bps, None);
    assert_eq!(rows[1].paused_share, 0.125);
    assert!(consults
        .participation("B", &consult.id)
        .await
        .unwrap()
        .is_none());
}

async fn flushed_records_survive_a_reopen(options: StoreOptions) {
    let consults = Consults::open(options.clone()).await.unwrap();
    let (consult, invite) = create_one(&consults, "A").await;
    let key = consults.dev_operator_key().await.unwrap();
    consults.audit(event(&consult.id, AuditAction::Admitted, "Dr Minh"));
    consults.end(&consult.id, "Dr Minh", Role::Specialist);
    let (other, other_invite) = create_one(&consults, "A").await;
    consults.flush().await.unwrap();
    drop(consults);

    let consults = Consults::open(options).await.unwrap();
    let (_, events) = consults
        .audit_trail("A", &consult.id)
        .await
        .unwrap()
        .unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["created", "invited", "invited", "admitted", "ended"]
    );
    assert_eq!(
        consults.verify_invite(&invite).await,
        Err(InviteError::Ended)
    );
    // The generated secret was kept: links handed out before still work.
    let joined = consults.verify_invite(&other_invite).await.unwrap();
    assert_eq!(joined.consult_id, other.id);
    assert_eq!(consults.dev_operator_key().await.unwrap(), key);
    assert_eq!(consults.list("A", 10).await.unwrap().len(), 2);
}

/// Nodes starting together against one fresh database: the schema is made once, and every
/// node ends up with the same invite secret and dev key, so each verifies the others' links.
async fn nodes_opening_at_once_share_one_secret(options: StoreOptions) {
    let opened =
        futures_util::future::join_all((0..4).map(|_| Consults::open(options.clone()))).await;
    let nodes: Vec<Consults> = opened.into_iter().map(Result::unwrap).collect();
    let keys = futures_util::future::join_all(nodes.iter().map(|n| n.dev_operator_key())).await;
    let keys: Vec<String> = keys.into_iter().map(Result::unwrap).collect();
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    for (i, maker) in nodes.iter().enumerate() {
        let (consult, invite) = create_one(maker, "A").await;
        for (j, checker) in nodes.iter().enumerate() {
            let got = checker.verify_invite(&invite).await;
            assert_eq!(
                got.map(|i| i.consult_id),
                Ok(consult.id.clone()),
                "node {j} verifies node {i}'s invite"
            );
        }
    }
    // The room on one node and the API on another end it at once: one `ended` row.
    let (consult, _) = create_one(&nodes[0], "A").await;
    let id = consult.id.clone();
    nodes[1].end(&id, "Dr Minh", Role::Specialist);
    let (a, b) = tokio::join!(
        nodes[2].end_by_operator("A", &id, now()),
        nodes[3].end_by_operator("A", &id, now()),
    );
    for n in &nodes {
        n.flush().await.unwrap();
    }
    let ended = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|o| matches!(o, EndOutcome::Ended(_)))
        .count();
    assert!(ended <= 1, "at most one of the operator's ends wins");
    let (_, events) = nodes[0].audit_trail("A", &id).await.unwrap().unwrap();
    assert_eq!(events.iter().filter(|e| e.action == "ended").count(), 1);
}
