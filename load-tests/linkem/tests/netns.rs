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
