use super::*;

#[test]
fn parses_valid_messages() {
    let cases: &[(&str, ClientMessage)] = &[
        (
            r#"{"v":1,"type":"join","room":"consult-42","name":"Dr Lan","role":"specialist"}"#,
            ClientMessage::Join {
                invite: None,
                room: Some("consult-42".into()),
                name: Some("Dr Lan".into()),
                role: Some(Role::Specialist),
                resume: None,
            },
        ),
        (
            r#"{"v":1,"type":"join","invite":"eyJ.a.b","resume":"cDox.c2ln"}"#,
            ClientMessage::Join {
                invite: Some("eyJ.a.b".into()),
                room: None,
                name: None,
                role: None,
                resume: Some("cDox.c2ln".into()),
            },
        ),
        (r#"{"v":1,"type":"ice_restart"}"#, ClientMessage::IceRestart),
        (
            r#"{"v":1,"type":"join","invite":"eyJ.a.b"}"#,
            ClientMessage::Join {
                invite: Some("eyJ.a.b".into()),
                room: None,
                name: None,
                role: None,
                resume: None,
            },
        ),
        (
            r#"{"v":1,"type":"admit","participant_id":"p5"}"#,
            ClientMessage::Admit {
                participant_id: "p5".into(),
            },
        ),
        (
            r#"{"v":1,"type":"offer","sdp":"v=0\r\n","screen_mid":"2"}"#,
            ClientMessage::Offer {
                sdp: "v=0\r\n".into(),
                screen_mid: Some("2".into()),
            },
        ),
        (r#"{"v":1,"type":"end_consult"}"#, ClientMessage::EndConsult),
        (
            r#"{"v":1,"type":"share","active":true}"#,
            ClientMessage::Share { active: true },
        ),
        (
            r#"{"v":1,"type":"offer","sdp":"v=0\r\n"}"#,
            ClientMessage::Offer {
                sdp: "v=0\r\n".into(),
                screen_mid: None,
            },
        ),
        (
            r#"{"v":1,"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdp_mid":"0"}"#,
            ClientMessage::Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: None,
            },
        ),
        (
            r#"{"v":1,"type":"mute","kind":"video","muted":true}"#,
            ClientMessage::Mute {
                kind: TrackKind::Video,
                muted: true,
            },
        ),
        (
            r#"{"v":1,"type":"set_preference","data_saver":true}"#,
            ClientMessage::SetPreference {
                data_saver: true,
                max_layer: None,
            },
        ),
        (r#"{"v":1,"type":"leave"}"#, ClientMessage::Leave),
    ];
    for (text, expected) in cases {
        assert_eq!(&parse_client_message(text).unwrap(), expected, "{text}");
    }
}

#[test]
fn rejects_bad_input_with_the_right_code() {
    let big = format!(
        r#"{{"v":1,"type":"offer","sdp":"{}"}}"#,
        "a".repeat(MAX_MESSAGE_BYTES)
    );
    let cases: &[(&str, ErrorCode)] = &[
        ("", ErrorCode::BadJson),
        ("{not json", ErrorCode::BadJson),
        ("[1,2]", ErrorCode::BadJson),
        (r#"{"type":"leave"}"#, ErrorCode::UnsupportedVersion),
        (r#"{"v":2,"type":"leave"}"#, ErrorCode::UnsupportedVersion),
        (r#"{"v":"1","type":"leave"}"#, ErrorCode::UnsupportedVersion),
        (r#"{"v":1}"#, ErrorCode::UnknownType),
        (r#"{"v":1,"type":"dance"}"#, ErrorCode::UnknownType),
        (r#"{"v":1,"type":7}"#, ErrorCode::UnknownType),
        (
            r#"{"v":1,"type":"join","room":"x"}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"join","room":"x","name":"a","role":"admin"}"#,
            ErrorCode::InvalidMessage,
        ),
        (r#"{"v":1,"type":"join"}"#, ErrorCode::InvalidMessage),
        (
            r#"{"v":1,"type":"join","invite":"eyJ.a.b","resume":""}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"join","resume":"cDox.c2ln"}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"join","invite":""}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"join","invite":"t","room":"x","name":"a","role":"patient"}"#,
            ErrorCode::InvalidMessage,
        ),
        (r#"{"v":1,"type":"admit"}"#, ErrorCode::InvalidMessage),
        (
            r#"{"v":1,"type":"remove","participant_id":""}"#,
            ErrorCode::InvalidMessage,
        ),
        (r#"{"v":1,"type":"share"}"#, ErrorCode::InvalidMessage),
        (
            r#"{"v":1,"type":"join","room":"Bad Room","name":"a","role":"patient"}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"join","room":"r","name":"  ","role":"patient"}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"join","room":"r","name":"a\u0007","role":"patient"}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"offer","sdp":""}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"mute","kind":"smell","muted":true}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"v":1,"type":"set_preference","data_saver":false,"max_layer":"x"}"#,
            ErrorCode::InvalidMessage,
        ),
        (&big, ErrorCode::TooLarge),
    ];
    for (text, code) in cases {
        let err = parse_client_message(text).unwrap_err();
        assert_eq!(err.code(), *code, "{text:.80}: {err}");
    }
}

#[test]
fn unknown_fields_are_ignored_for_additive_changes() {
    let parsed = parse_client_message(r#"{"v":1,"type":"leave","extra":1}"#).unwrap();
    assert_eq!(parsed, ClientMessage::Leave);
}

#[test]
fn server_messages_carry_the_version() {
    let text = encode_server_message(&ServerMessage::ParticipantLeft {
        participant_id: "p1".into(),
    });
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["v"], 1);
    assert_eq!(value["type"], "participant_left");
    assert_eq!(value["participant_id"], "p1");
    for code in [
        ErrorCode::BadJson,
        ErrorCode::RoomFull,
        ErrorCode::RateLimited,
        ErrorCode::JoinTimeout,
        ErrorCode::ServerBusy,
    ] {
        let wire = serde_json::to_value(code).unwrap();
        assert_eq!(wire, code.as_str(), "as_str matches serde");
    }
    let err = encode_server_message(&ServerMessage::error(ErrorCode::RoomFull, "full"));
    assert!(err.contains(r#""code":"room_full""#), "{err}");
}

#[test]
fn only_clinic_and_specialist_open_rooms() {
    assert!(Role::Clinic.may_open_room());
    assert!(Role::Specialist.may_open_room());
    assert!(!Role::Patient.may_open_room());
}

#[test]
fn joined_carries_ice_servers_only_when_there_are_some() {
    let joined = ServerMessage::Joined {
        participant_id: "p7".into(),
        room: "r".into(),
        title: String::new(),
        you: ParticipantInfo {
            participant_id: "p7".into(),
            name: "A".into(),
            role: Role::Patient,
            audio_muted: false,
            video_muted: false,
        },
        participants: Vec::new(),
        video_layers: Vec::new(),
        resume_token: None,
        resumed: false,
    };
    let ice = [
        IceServer {
            urls: vec!["turns:t.example:443?transport=tcp".into()],
            username: Some("1700000000:p7".into()),
            credential: Some("xmmg6LBfGUDXFKHM3UkIsyWwYbY=".into()),
        },
        IceServer {
            urls: vec!["stun:s.example:3478".into()],
            username: None,
            credential: None,
        },
    ];
    let value: serde_json::Value =
        serde_json::from_str(&encode_server_message_with_ice(&joined, &ice)).unwrap();
    assert_eq!(value["v"], 1);
    assert_eq!(
        value["ice_servers"],
        serde_json::json!([
            {"urls": ["turns:t.example:443?transport=tcp"], "username": "1700000000:p7",
             "credential": "xmmg6LBfGUDXFKHM3UkIsyWwYbY="},
            {"urls": ["stun:s.example:3478"]},
        ])
    );
    // None configured: the field is absent, as before (older clients see no change).
    let plain: serde_json::Value =
        serde_json::from_str(&encode_server_message_with_ice(&joined, &[])).unwrap();
    assert!(plain.get("ice_servers").is_none());
    assert_eq!(encode_server_message(&joined), plain.to_string());
    // Only `joined` carries it.
    let left = ServerMessage::ParticipantLeft {
        participant_id: "p1".into(),
    };
    assert!(!encode_server_message_with_ice(&left, &ice).contains("ice_servers"));
}
