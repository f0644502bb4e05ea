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
use linkem::{Dir, Profile};

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
    check_signal()?;

    eprintln!(
        "linkem: profile {:?} from {}",
        profile.name,
        args.profile.display()
    );
    for dir in [Dir::Downlink, Dir::Uplink] {
        eprintln!("linkem: {}: {}", dir.name(), profile.base(dir));
    }
    for ch in &profile.schedule {
        eprintln!(
            "linkem: schedule at {:?} {:?}: {:?}",
            ch.at, ch.target, ch.patch
        );
    }

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
    loop {
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

fn report(dir: Dir, c: &Counters) {
    eprintln!(
        "linkem: {} total: in {} pkts / {} B, out {} pkts / {} B, lost {}, queue-dropped {}, write errors {}",
        dir.name(),
        c.packets_in,
        c.bytes_in,
        c.packets_out,
        c.bytes_out,
        c.dropped_loss,
        c.dropped_queue,
        c.write_errors
    );
}
