//! A consult's summary from its participation records. Pure.

use signaling::Role;

use super::db::{ConsultRow, ParticipationRow};

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// From the first join to the last leave (or the end, if earlier); None before anyone
    /// has left.
    pub duration_s: Option<i64>,
    /// In order of first join.
    pub participants: Vec<ParticipantSummary>,
}

/// One participant, over all their sessions (a dropped link and a rejoin are two records).
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantSummary {
    pub name: String,
    pub role: Role,
    pub seconds: i64,
    pub joined_at: i64,
    pub left_at: i64,
    pub median_receive_kbps: Option<f64>,
    pub low_layer_share: f64,
    pub paused_share: f64,
    pub loss_percent: f64,
}

pub fn summarize(consult: &ConsultRow, rows: &[ParticipationRow]) -> Summary {
    let first_join = rows.iter().map(|r| r.joined_at).min();
    let last_leave = rows.iter().map(|r| r.left_at).max();
    let duration_s = match (first_join, last_leave) {
        (Some(start), Some(leave)) => {
            let end = consult.ended_at.map_or(leave, |e| e.min(leave));
            Some((end - start).max(0))
        }
        _ => None,
    };

    // At most a handful of people: a list beats a map, and keeps the order of first join.
    let mut groups: Vec<((&str, Role), Vec<&ParticipationRow>)> = Vec::new();
    let mut sorted: Vec<&ParticipationRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.joined_at);
    for r in sorted {
        let key = (r.name.as_str(), r.role);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, sessions)) => sessions.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let participants = groups
        .into_iter()
        .map(|((name, role), sessions)| {
            let seconds_of = |r: &ParticipationRow| (r.left_at - r.joined_at).max(0);
            let seconds: i64 = sessions.iter().map(|r| seconds_of(r)).sum();
            // Means weighted by session length: a 30 s drop-out must not weigh like the
            // 20 min before it. Zero-length sessions count equally when all are.
            let weight = |r: &ParticipationRow| {
                if seconds > 0 {
                    seconds_of(r) as f64
                } else {
                    1.0
                }
            };
            let mean = |value: &dyn Fn(&ParticipationRow) -> Option<f64>| {
                let (sum, total) = sessions
                    .iter()
                    .filter_map(|r| value(r).map(|v| (v * weight(r), weight(r))))
                    .fold((0.0, 0.0), |(s, t), (v, w)| (s + v, t + w));
                (total > 0.0).then(|| sum / total)
            };
            ParticipantSummary {
                name: name.to_string(),
                role,
                seconds,
                joined_at: sessions.iter().map(|r| r.joined_at).min().unwrap_or(0),
                left_at: sessions.iter().map(|r| r.left_at).max().unwrap_or(0),
                median_receive_kbps: mean(&|r| r.median_receive_bps.map(|b| b as f64 / 1000.0))
                    .map(round1),
                low_layer_share: mean(&|r| Some(r.low_layer_share)).map_or(0.0, round3),
                paused_share: mean(&|r| Some(r.paused_share)).map_or(0.0, round3),
                loss_percent: mean(&|r| Some(r.loss_percent)).map_or(0.0, round1),
            }
        })
        .collect();
    Summary {
        duration_s,
        participants,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consult(ended_at: Option<i64>) -> ConsultRow {
        ConsultRow {
            id: "c-x".into(),
            clinic: "A".into(),
            title: "t".into(),
            scheduled_at: None,
            created_at: 0,
            ended_at,
        }
    }

    fn row(name: &str, role: Role, joined: i64, left: i64, kbps: Option<u64>) -> ParticipationRow {
        ParticipationRow {
            name: name.into(),
            role,
            joined_at: joined,
            left_at: left,
            median_receive_bps: kbps.map(|k| k * 1000),
            low_layer_share: 0.5,
            paused_share: 0.0,
            loss_percent: 1.0,
        }
    }

    #[test]
    fn nobody_joined() {
        let s = summarize(&consult(Some(10)), &[]);
        assert_eq!(s.duration_s, None);
        assert!(s.participants.is_empty());
    }

    #[test]
    fn rejoins_are_summed_and_weighted() {
        let rows = [
            row("Dr Lan", Role::Specialist, 100, 1300, Some(900)),
            row("An", Role::Patient, 130, 400, Some(200)),
            // An's link dropped; back 20 s later for the rest.
            row("An", Role::Patient, 420, 1300, Some(300)),
        ];
        let s = summarize(&consult(Some(1300)), &rows);
        assert_eq!(s.duration_s, Some(1200));
        assert_eq!(s.participants.len(), 2);
        assert_eq!(s.participants[0].name, "Dr Lan");
        let an = &s.participants[1];
        assert_eq!(an.seconds, 270 + 880);
        assert_eq!((an.joined_at, an.left_at), (130, 1300));
        // (200 * 270 + 300 * 880) / 1150 = 276.5
        assert_eq!(an.median_receive_kbps, Some(276.5));
        assert_eq!(an.low_layer_share, 0.5);
    }

    #[test]
    fn duration_stops_at_the_end_and_unknown_bitrate_stays_unknown() {
        let rows = [row("Clinic", Role::Clinic, 0, 500, None)];
        let s = summarize(&consult(Some(300)), &rows);
        assert_eq!(s.duration_s, Some(300));
        assert_eq!(s.participants[0].median_receive_kbps, None);
        let s = summarize(&consult(None), &rows);
        assert_eq!(s.duration_s, Some(500));
    }
}
