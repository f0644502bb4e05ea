//! End-to-end checks of the `linkem` binary: real namespaces, TUN devices and UDP through them.
//! They need root and /dev/net/tun; otherwise they print a note and pass.
//! Namespace names carry the test process id, so they never collide with anything else.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_linkem");

fn can_run() -> bool {
    // SAFETY: plain getter.
    let root = unsafe { libc::geteuid() } == 0;
    let ok = root && Path::new("/dev/net/tun").exists();
    if !ok {
        eprintln!("skipping: needs root and /dev/net/tun");
    }
    ok
}

fn ns_exists(name: &str) -> bool {
    Path::new(&format!("/var/run/netns/{name}")).exists()
}

fn names(tag: &str) -> (String, String) {
    let pid = std::process::id();
    (format!("lkt{pid}{tag}a"), format!("lkt{pid}{tag}b"))
}

fn profile(tag: &str, body: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("linkem-test-{}-{tag}.toml", std::process::id()));
    std::fs::write(&p, body).unwrap();
    p
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits for the READY line.
fn wait_ready(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("LINKEM_READY a="), "got {line:?}");
    line
}

/// Runs `f` on a thread that has entered namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let nsf = File::open(path).unwrap();
        // SAFETY: setns on an fd we own, affecting only this thread.
        assert_eq!(
            unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn forwards_with_delay_and_cleans_up_after_duration() {
    if !can_run() {
        return;
    }
    let (a, b) = names("d");
    let prof = profile("d", "[downlink]\ndelay_ms = 40\n[uplink]\ndelay_ms = 60\n");
    let mut child = spawn(&[
        "--profile",
        prof.to_str().unwrap(),
        "--ns-a",
        &a,
        "--ns-b",
        &b,
        "--addr-a",
        "203.0.113.1",
        "--addr-b",
        "203.0.113.2",
        "--duration",
        "3",
    ]);
    let started = Instant::now();
    assert_eq!(
        wait_ready(&mut child).trim(),
        "LINKEM_READY a=203.0.113.1 b=203.0.113.2"
    );
    assert!(ns_exists(&a) && ns_exists(&b));

    // Server in a: echo one datagram back. Client in b: measure the round trip.
    let server = in_ns(&a, || UdpSocket::bind("203.0.113.1:0").unwrap());
    let port = server.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(&buf[..n], from).unwrap();
    });
    let rtt = in_ns(&b, move || {
        let c = UdpSocket::bind("203.0.113.2:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let t = Instant::now();
        c.send_to(b"hello", ("203.0.113.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        t.elapsed()
    });
    echo.join().unwrap();
    assert!(
        rtt >= Duration::from_millis(100) && rtt < Duration::from_millis(130),
        "rtt {rtt:?}"
    );

    let status = child.wait().unwrap();
    assert!(status.success());
    let ran = started.elapsed();
    assert!(
        ran >= Duration::from_millis(2900) && ran < Duration::from_secs(6),
        "ran {ran:?}"
    );
    assert!(!ns_exists(&a) && !ns_exists(&b), "namespaces left behind");
    let list = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!list.contains(&a) && !list.contains(&b), "{list}");
    let _ = std::fs::remove_file(prof);
}

#[test]
fn sigterm_cleans_up() {
    if !can_run() {
        return;
    }
    let (a, b) = names("t");
    let prof = profile("t", "");
    let mut child = spawn(&[
        "--profile",
        prof.to_str().unwrap(),
        "--ns-a",
        &a,
        "--ns-b",
        &b,
    ]);
    wait_ready(&mut child);
    assert!(ns_exists(&a) && ns_exists(&b));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(!ns_exists(&a) && !ns_exists(&b));
    let _ = std::fs::remove_file(prof);
}

#[test]
fn never_deletes_a_namespace_it_did_not_create() {
    if !can_run() {
        return;
    }
    let (a, b) = names("x");
    let prof = profile("x", "");
    // ns-b already exists: linkem must fail, undo ns-a, and leave ns-b alone.
    assert!(Command::new("ip")
        .args(["netns", "add", &b])
        .status()
        .unwrap()
        .success());
    let out = Command::new(BIN)
        .args([
            "--profile",
            prof.to_str().unwrap(),
            "--ns-a",
            &a,
            "--ns-b",
            &b,
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert!(!ns_exists(&a), "ns-a it created must be removed");
    assert!(ns_exists(&b), "pre-existing ns-b must be left alone");

    // --keep-ns-a: the kept namespace survives, ns-b is removed.
    let (a2, b2) = (b.clone(), format!("{a}2"));
    let mut child = spawn(&[
        "--profile",
        prof.to_str().unwrap(),
        "--ns-a",
        &a2,
        "--ns-b",
        &b2,
        "--keep-ns-a",
        "--duration",
        "1",
    ]);
    wait_ready(&mut child);
    assert!(child.wait().unwrap().success());
    assert!(ns_exists(&a2), "kept ns-a must survive");
    assert!(!ns_exists(&b2));
    assert!(Command::new("ip")
        .args(["netns", "del", &b])
        .status()
        .unwrap()
        .success());
    let _ = std::fs::remove_file(prof);
}

#[test]
fn nat_rebind_changes_the_source_the_server_sees_and_outage_drops_everything() {
    if !can_run() {
        return;
    }
    let (a, b) = names("n");
    let prof = profile(
        "n",
        "[uplink]\ndelay_ms = 5\n[nat]\nexternal = [\"203.0.113.9\", \"203.0.113.13\"]\n\
         [[schedule]]\nat_s = 1.5\nnat_rebind = true\n\
         [[schedule]]\nat_s = 2.5\noutage = true\n[[schedule]]\nat_s = 3.0\noutage = false\n",
    );
    let mut child = spawn(&[
        "--profile",
        prof.to_str().unwrap(),
        "--ns-a",
        &a,
        "--ns-b",
        &b,
        "--duration",
        "5",
    ]);
    wait_ready(&mut child);
    let t0 = Instant::now();
    let at = |s: f64| {
        let due = t0 + Duration::from_secs_f64(s);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    };
    let server = in_ns(&a, || UdpSocket::bind("198.51.100.1:4000").unwrap());
    let client = in_ns(&b, || UdpSocket::bind("198.51.100.2:5000").unwrap());
    for s in [&server, &client] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    let mut buf = [0u8; 64];
    // Returns where the server saw the datagram come from, or None if it never arrived.
    let mut send = |msg: &[u8]| {
        client.send_to(msg, "198.51.100.1:4000").unwrap();
        server.recv_from(&mut buf).ok().map(|(n, from)| {
            assert_eq!(&buf[..n], msg);
            from
        })
    };

    at(0.2);
    let first = send(b"one").expect("first datagram");
    assert_eq!(
        first.ip().to_string(),
        "203.0.113.9",
        "server sees the NAT's address"
    );
    server.send_to(b"r1", first).unwrap();
    let mut rbuf = [0u8; 16];
    assert_eq!(
        client.recv(&mut rbuf).unwrap(),
        2,
        "reply through the binding"
    );

    at(1.8);
    let second = send(b"two").expect("datagram after the rebind");
    assert_eq!(
        second.ip().to_string(),
        "203.0.113.13",
        "new address after the rebind"
    );
    assert_ne!(second.port(), first.port(), "new port after the rebind");
    server.send_to(b"old", first).unwrap();
    server.send_to(b"new", second).unwrap();
    let n = client.recv(&mut rbuf).unwrap();
    assert_eq!(
        &rbuf[..n],
        b"new",
        "the old binding is gone, the new one works"
    );

    at(2.6);
    assert_eq!(send(b"three"), None, "nothing passes during the outage");
    at(3.2);
    assert_eq!(send(b"four"), Some(second), "same binding after the outage");

    assert!(child.wait().unwrap().success());
    assert!(!ns_exists(&a) && !ns_exists(&b));
    let _ = std::fs::remove_file(prof);
}

#[test]
fn addr_b_moves_the_weak_side_to_a_new_address() {
    if !can_run() {
        return;
    }
    let (a, b) = names("m");
    let prof = profile("m", "[[schedule]]\nat_s = 1.0\naddr_b = \"203.0.113.10\"\n");
    let mut child = spawn(&[
        "--profile",
        prof.to_str().unwrap(),
        "--ns-a",
        &a,
        "--ns-b",
        &b,
        "--duration",
        "4",
    ]);
    wait_ready(&mut child);
    let t0 = Instant::now();
    let server = in_ns(&a, || UdpSocket::bind("198.51.100.1:4000").unwrap());
    server
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // Unbound client sockets: the kernel picks the source address, as Chromium's do for TCP.
    let ping = |ns: &str| {
        let c = in_ns(ns, || UdpSocket::bind("0.0.0.0:0").unwrap());
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        c.send_to(b"hi", "198.51.100.1:4000").unwrap();
        let mut buf = [0u8; 16];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(b"ok", from).unwrap();
        assert_eq!(c.recv(&mut buf).unwrap(), 2, "reply reaches the client");
        from.ip().to_string()
    };
    assert_eq!(ping(&b), "198.51.100.2");
    let old = in_ns(&b, || UdpSocket::bind("198.51.100.2:5000").unwrap());
    // A TCP connection from the old address, established before the move.
    let listener = in_ns(&a, || {
        std::net::TcpListener::bind("198.51.100.1:4001").unwrap()
    });
    let mut tcp = in_ns(&b, || {
        std::net::TcpStream::connect("198.51.100.1:4001").unwrap()
    });
    let _accepted = listener.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    std::thread::sleep(
        (t0 + Duration::from_millis(1300)).saturating_duration_since(Instant::now()),
    );
    assert_eq!(ping(&b), "203.0.113.10", "the server sees the new address");
    // The old address is gone: a socket bound to it can no longer send, and the TCP
    // connection from it was aborted (as a phone does when its Wi-Fi goes away).
    assert!(old.send_to(b"x", "198.51.100.1:4000").is_err());
    let mut byte = [0u8; 1];
    let err = std::io::Read::read(&mut tcp, &mut byte).expect_err("aborted connection");
    assert_eq!(err.raw_os_error(), Some(libc::ECONNABORTED), "{err}");
    let addrs = String::from_utf8(
        Command::new("ip")
            .args(["-n", &b, "-4", "-o", "addr", "show", "dev", "linkem0"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        addrs.contains("203.0.113.10/32") && !addrs.contains("198.51.100.2"),
        "{addrs}"
    );

    assert!(child.wait().unwrap().success());
    assert!(!ns_exists(&a) && !ns_exists(&b));
    let _ = std::fs::remove_file(prof);
}
