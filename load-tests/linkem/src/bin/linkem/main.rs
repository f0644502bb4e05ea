//! `linkem`: a userspace link emulator between two network namespaces. See README.md.

mod forward;
mod netns;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use linkem::cli::{Args, Command, TUN_NAME, USAGE};
use linkem::stats::{Counters, CSV_HEADER};
use linkem::{Dir, Nat, Profile};

use netns::NetnsGuard;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error()).context("sigaction");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cmd = match Args::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("linkem: {e}");
            return ExitCode::from(2);
        }
    };
    let args = match cmd {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Run(a) => a,
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linkem: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_signal() -> Result<()> {
    if SIGNALLED.load(Ordering::SeqCst) {
        bail!("interrupted by a signal during setup");
    }
    Ok(())
}

fn run(args: Args) -> Result<()> {
    let profile = Profile::load(&args.profile)?;
    install_signal_handlers()?;
    if args.exit_with_parent {
        // SAFETY: plain prctl.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            if libc::getppid() == 1 {
                bail!("parent already exited");
            }
        }
    }
    let csv = match &args.log_csv {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("create {}", path.display()))?;
            writeln!(f, "{CSV_HEADER}")?;
            Some(Arc::new(Mutex::new(Box::new(f) as Box<dyn Write + Send>)))
        }
        None => None,
    };

    // Everything created from here on is undone by `guard` (declared first, dropped last).
    let mut guard = NetnsGuard::default();
    if args.keep_ns_a {
        if !netns::ns_exists(&args.ns_a) {
            bail!(
                "--keep-ns-a given but namespace {:?} does not exist",
                args.ns_a
            );
        }
    } else {
        guard.create(&args.ns_a)?;
    }
    guard.create(&args.ns_b)?;
    check_signal()?;

    let tun_a = Arc::new(netns::open_tun_in(&args.ns_a, TUN_NAME)?);
    let tun_b = Arc::new(netns::open_tun_in(&args.ns_b, TUN_NAME)?);
    netns::configure(&args.ns_a, TUN_NAME, args.addr_a)?;
    netns::configure(&args.ns_b, TUN_NAME, args.addr_b)?;
    for (at, addr) in profile.addr_b_changes() {
        if addr == args.addr_a
            || profile
                .nat
                .as_ref()
                .is_some_and(|n| n.addrs.contains(&addr))
        {
            bail!("schedule at {at:?}: addr_b {addr} is already used by ns-a or the NAT");
        }
    }
    if let Some(nat) = &profile.nat {
        // The server side reaches the NAT's external addresses through the emulated link. The
        // routes go away with the TUN device when linkem exits.
        for ext in &nat.addrs {
            let same_30 = |x: std::net::Ipv4Addr| u32::from(x) & !3 == u32::from(*ext) & !3;
            if same_30(args.addr_a) || same_30(args.addr_b) {
                bail!(
                    "NAT external address {ext} is inside the link's /30 ({}/{}): use another /30",
                    args.addr_a,
                    args.addr_b
                );
            }
            netns::ip(&[
                "-n",
                &args.ns_a,
                "route",
                "add",
                &format!("{ext}/32"),
                "dev",
                TUN_NAME,
            ])?;
        }
    }
    check_signal()?;

    eprintln!(
        "linkem: profile {:?} from {}",
        profile.name,
        args.profile.display()
    );
    for dir in [Dir::Downlink, Dir::Uplink] {
        eprintln!("linkem: {}: {}", dir.name(), profile.base(dir));
    }
    if let Some(nat) = &profile.nat {
        eprintln!(
            "linkem: NAT on the b side: external {:?}, ports {}-{}",
            nat.addrs, nat.port_min, nat.port_max
        );
    }
    for ch in &profile.schedule {
        eprintln!(
            "linkem: schedule at {:?} {:?}: {:?}{}",
            ch.at,
            ch.target,
            ch.patch,
            if ch.nat_rebind { " + NAT rebind" } else { "" }
        );
    }
    let nat = profile
        .nat
        .clone()
        .map(|cfg| Arc::new(Mutex::new(Nat::new(cfg))));

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut threads = Vec::new();
    for (dir, src, dst) in [
        (Dir::Downlink, tun_a.clone(), tun_b.clone()),
        (Dir::Uplink, tun_b.clone(), tun_a.clone()),
    ] {
        let d = forward::Direction {
            dir,
            src,
            dst,
            timeline: profile.timeline(dir),
            seed: args.seed,
            start,
            stop: stop.clone(),
            csv: csv.clone(),
            nat: nat.as_ref().map(|n| forward::NatHook {
                nat: n.clone(),
                rebinds: profile.nat_rebinds(),
            }),
        };
        let h = std::thread::Builder::new()
            .name(dir.name().to_string())
            .spawn(move || forward::run(d))
            .context("spawn forwarding thread")?;
        threads.push((dir, h));
    }

    println!("LINKEM_READY a={} b={}", args.addr_a, args.addr_b);
    let _ = std::io::stdout().flush();

    let deadline = args.duration.map(|d| start + d);
    let mut failed = false;
    let mut moves = profile.addr_b_changes().into_iter().peekable();
    let mut addr_b = AddrB {
        addr: args.addr_b,
        prefix: 30,
    };
    loop {
        while let Some((at, to)) = moves.next_if(|(at, _)| start.elapsed() >= *at) {
            let from = addr_b.addr;
            match move_b(&args, &mut addr_b, to) {
                Ok(()) => eprintln!(
                    "linkem: t={:.1}s b address {from} -> {to} (scheduled at {:.1}s)",
                    start.elapsed().as_secs_f64(),
                    at.as_secs_f64()
                ),
                Err(e) => {
                    eprintln!("linkem: error: moving b to {to}: {e:#}");
                    failed = true;
                }
            }
        }
        if failed {
            break;
        }
        if SIGNALLED.load(Ordering::SeqCst) {
            eprintln!("linkem: signal received, stopping");
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!("linkem: duration reached, stopping");
            break;
        }
        if threads.iter().any(|(_, h)| h.is_finished()) {
            eprintln!("linkem: a forwarding thread ended unexpectedly, stopping");
            failed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    for (dir, h) in threads {
        match h.join() {
            Ok(c) => report(dir, &c),
            Err(_) => {
                eprintln!("linkem: {} thread panicked", dir.name());
                failed = true;
            }
        }
    }
    // Close the TUN devices before deleting the namespaces.
    drop(tun_a);
    drop(tun_b);
    drop(guard);
    if failed {
        bail!("forwarding failed");
    }
    Ok(())
}

/// The weak side's current address and its prefix length on the TUN device.
struct AddrB {
    addr: std::net::Ipv4Addr,
    prefix: u8,
}

/// The weak side changes networks: `to` is added to its TUN device, a host route keeps the
/// server side's address reachable from it (and makes it the source address), ns-a gets a host
/// route back, and the old address is removed, as when a phone's Wi-Fi interface goes away.
/// Sockets bound to the old address stop working; TCP connections from it are aborted.
fn move_b(args: &linkem::cli::Args, cur: &mut AddrB, to: std::net::Ipv4Addr) -> Result<()> {
    let (a, b) = (args.ns_a.as_str(), args.ns_b.as_str());
    let to_s = to.to_string();
    let addr_a = args.addr_a.to_string();
    netns::ip(&["-n", b, "addr", "add", &format!("{to}/32"), "dev", TUN_NAME])?;
    netns::ip(&[
        "-n",
        b,
        "route",
        "replace",
        &format!("{addr_a}/32"),
        "dev",
        TUN_NAME,
        "src",
        &to_s,
    ])?;
    netns::ip(&[
        "-n",
        a,
        "route",
        "replace",
        &format!("{to}/32"),
        "dev",
        TUN_NAME,
    ])?;
    netns::ip(&[
        "-n",
        b,
        "addr",
        "del",
        &format!("{}/{}", cur.addr, cur.prefix),
        "dev",
        TUN_NAME,
    ])?;
    if cur.prefix == 32 {
        // Packets for the old address now go nowhere, as they would on the old network.
        let _ = netns::ip(&["-n", a, "route", "del", &format!("{}/32", cur.addr)]);
    }
    // A phone aborts the TCP connections of a network that went away (Android destroys them
    // with SOCK_DESTROY): so does this, with `ss -K`. Otherwise they would hang in
    // retransmission until their timeouts. UDP sockets bound to the old address just fail.
    if let Err(e) = netns::ip(&[
        "netns",
        "exec",
        b,
        "ss",
        "-K",
        "-t",
        "src",
        &cur.addr.to_string(),
    ]) {
        eprintln!(
            "linkem: WARNING: could not abort TCP connections from {}: {e:#}",
            cur.addr
        );
    }
    *cur = AddrB {
        addr: to,
        prefix: 32,
    };
    Ok(())
}

fn report(dir: Dir, c: &Counters) {
    eprintln!(
        "linkem: {} total: in {} pkts / {} B, out {} pkts / {} B, lost {}, queue-dropped {}, write errors {}, NAT-dropped {}",
        dir.name(),
        c.packets_in,
        c.bytes_in,
        c.packets_out,
        c.bytes_out,
        c.dropped_loss,
        c.dropped_queue,
        c.write_errors,
        c.dropped_nat
    );
}
