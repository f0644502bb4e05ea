//! The message table: each bad message, its typed error or close, and the consult unharmed.

use super::connections::{idle_sockets_are_limited_and_time_out, stalled_handshakes_are_dropped};
use super::*;

struct Case {
    name: &'static str,
    start: Start,
    input: Input,
    outcome: Outcome,
}

fn cases() -> Vec<Case> {
    use Input::*;
    use Outcome::*;
    use Start::*;
    let text = |s: &str| Text(s.to_string());
    let big = |bytes: usize| {
        Text(format!(
            r#"{{"v":1,"type":"offer","sdp":"{}"}}"#,
            "x".repeat(bytes)
        ))
    };
    let case = |name, start, input, outcome| Case {
        name,
        start,
        input,
        outcome,
    };
    vec![
        case("invalid JSON", Fresh, text("{not json"), Error("bad_json")),
        case("a JSON array", Fresh, text("[1,2,3]"), Error("bad_json")),
        case(
            "wrong field types",
            Fresh,
            text(r#"{"v":1,"type":"join","room":42,"name":true,"role":"clinic"}"#),
            Error("invalid_message"),
        ),
        case(
            "unknown type",
            Fresh,
            text(r#"{"v":1,"type":"teleport"}"#),
            Error("unknown_type"),
        ),
        case(
            "missing version",
            Fresh,
            text(r#"{"type":"leave"}"#),
            Error("unsupported_version"),
        ),
        case(
            "candidate before join",
            Fresh,
            text(
                r#"{"v":1,"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}"#,
            ),
            Error("wrong_state"),
        ),
        case(
            "offer before join",
            Fresh,
            text(r#"{"v":1,"type":"offer","sdp":"v=0\r\n"}"#),
            Error("wrong_state"),
        ),
        case(
            "a message over 64 KiB",
            Fresh,
            big(70_000),
            Error("too_large"),
        ),
        case("a frame over 256 KiB", Fresh, big(300_000), Closed),
        case(
            "binary frame",
            Fresh,
            Binary(vec![0xde, 0xad, 0xbe, 0xef]),
            Error("invalid_message"),
        ),
        case(
            "a flood over the rate limit",
            Fresh,
            Flood(300),
            ErrorAmong("rate_limited"),
        ),
        case(
            "answer before offer",
            Joined,
            text(r#"{"v":1,"type":"answer","sdp":"v=0\r\n"}"#),
            Error("wrong_state"),
        ),
        case(
            "second join",
            Joined,
            Text(join("again", "patient").to_string()),
            Error("wrong_state"),
        ),
        case(
            "wrong field types after join",
            Joined,
            text(r#"{"v":1,"type":"mute","kind":"audio","muted":"yes"}"#),
            Error("invalid_message"),
        ),
        case(
            "invalid SDP",
            Joined,
            text(r#"{"v":1,"type":"offer","sdp":"this is not sdp"}"#),
            Error("bad_sdp"),
        ),
        case(
            "invalid candidate",
            Joined,
            text(r#"{"v":1,"type":"candidate","candidate":"candidate:garbage"}"#),
            Error("bad_candidate"),
        ),
        case(
            "an offer with too many tracks",
            Joined,
            OfferWithTracks(9),
            Error("bad_sdp"),
        ),
    ]
}

async fn run_case(server: &TestServer, case: &Case) {
    let name = case.name;
    let mut ws = server.connect().await;
    if let Start::Joined = case.start {
        send(&mut ws, join(name, "patient")).await;
        expect(&mut ws, "joined").await;
    }
    match &case.input {
        Input::Text(text) => {
            // A frame the server closes on may fail to send whole; the outcome tells.
            let _ = ws.send(Message::Text(text.clone().into())).await;
        }
        Input::Binary(bytes) => ws
            .send(Message::Binary(bytes.clone().into()))
            .await
            .unwrap(),
        Input::Flood(n) => {
            for _ in 0..*n {
                ws.feed(Message::Text("x".into())).await.unwrap();
            }
            ws.flush().await.unwrap();
        }
        Input::OfferWithTracks(n) => {
            let media = vec![MediaKind::Audio; *n];
            let (_rtc, offer, _pending) = client_offer(&media, false);
            send(&mut ws, offer_message(&offer)).await;
        }
    }
    match case.outcome {
        Outcome::Error(code) => {
            expect_error(&mut ws, code).await;
        }
        Outcome::ErrorAmong(code) => {
            expect_error_among(&mut ws, code).await;
            // The bucket refills at 50 per second.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Outcome::Closed => {
            // 1008 if the close frame gets through the reset of the unread rest.
            let code = expect_end(&mut ws).await;
            assert!(matches!(code, None | Some(1008)), "{name}: {code:?}");
            return;
        }
    }
    // The same connection goes on: it joins, or (joined) makes its one offer.
    match case.start {
        Start::Fresh => {
            send(&mut ws, join(name, "patient")).await;
            expect(&mut ws, "joined").await;
        }
        Start::Joined => {
            let (_rtc, offer, _pending) = client_offer(&[], true);
            send(&mut ws, offer_message(&offer)).await;
            let answer = expect(&mut ws, "answer").await;
            assert!(
                answer["sdp"].as_str().unwrap().contains("m=application"),
                "{name}: {answer}"
            );
        }
    }
    send(&mut ws, json!({"v":1,"type":"leave"})).await;
    assert_eq!(expect_end(&mut ws).await, Some(1000), "{name}");
}

#[tokio::test]
async fn hostile_input_gets_typed_errors_and_nothing_else_breaks() {
    let server = start("input", 100, PER_IP).await;
    let mut clinic = Healthy::join(&server, "Phòng khám Bắc Hà", "clinic").await;
    let mut doctor = Healthy::join(&server, "Dr Lan", "specialist").await;
    // Each receives the other's two tracks.
    doctor.answer_next_offer(2).await;
    clinic.answer_next_offer(2).await;

    for case in cases() {
        run_case(&server, &case).await;
        room_still_works(&mut clinic, &mut doctor, case.name).await;
    }

    // Connection-level attacks, at once: they run on timers.
    tokio::join!(
        stalled_handshakes_are_dropped(&server),
        idle_sockets_are_limited_and_time_out(&server),
    );
    room_still_works(&mut clinic, &mut doctor, "connection attacks").await;

    assert!(server.get("/healthz").await.ends_with("ok\n"));
    for code in ["bad_json", "rate_limited", "join_timeout", "server_busy"] {
        let name = format!("consult_signaling_errors_total{{code=\"{code}\"}}");
        assert!(server.metric(&name).await >= Some(1.0), "{name}");
    }

    // The healthy pair still negotiates: a late publisher's tracks reach both, theirs reach
    // it.
    let mut late = server.connect().await;
    send(&mut late, join("Chị Hoa", "patient")).await;
    expect(&mut late, "joined").await;
    let (mut late_rtc, offer, pending) = client_offer(&[MediaKind::Audio, MediaKind::Video], true);
    send(&mut late, offer_message(&offer)).await;
    let answer = expect(&mut late, "answer").await;
    let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap()).unwrap();
    late_rtc.sdp_api().accept_answer(pending, answer).unwrap();
    clinic.answer_next_offer(2).await;
    doctor.answer_next_offer(2).await;
    let offer = expect(&mut late, "offer").await;
    let offer = SdpOffer::from_sdp_string(offer["sdp"].as_str().unwrap()).unwrap();
    let answer = late_rtc.sdp_api().accept_offer(offer).unwrap();
    send(
        &mut late,
        json!({"v":1,"type":"answer","sdp":answer.to_sdp_string()}),
    )
    .await;
    assert_eq!(server.metric("consult_tracks").await, Some(6.0));
    assert_eq!(server.metric("consult_participants").await, Some(3.0));
    server.stop().await;
}
