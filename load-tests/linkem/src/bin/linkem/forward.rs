//! The IO shell: one thread per direction reads packets from the source TUN, asks the
//! [`Link`] when each one leaves, and writes it to the destination TUN at that time.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linkem::stats::Counters;
use linkem::{Dir, Link, Nat, NatDrop, SplitMix64, Timeline};

/// Longest a thread sleeps before re-checking the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Packets read per wake-up before due packets are sent again.
const READ_BATCH: usize = 64;
/// Hard cap on packets held in the delay line (memory bound when the rate is unlimited).
const MAX_HELD: usize = 100_000;

pub struct Direction {
    pub dir: Dir,
    pub src: Arc<OwnedFd>,
    pub dst: Arc<OwnedFd>,
    pub timeline: Timeline,
    pub seed: u64,
    pub start: Instant,
    pub stop: Arc<AtomicBool>,
    pub csv: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    pub nat: Option<NatHook>,
}

/// The weak side's NAT, shared by both directions: the uplink translates sources, the downlink
/// destinations. `rebinds` are the schedule's `nat_rebind` times.
pub struct NatHook {
    pub nat: Arc<Mutex<Nat>>,
    pub rebinds: Vec<Duration>,
}

impl NatHook {
    /// Applies the rebinds due at `elapsed` (once, whichever thread comes first) and returns
    /// the generation now in force.
    fn sync(&self, elapsed: Duration, name: &str, seen: &mut u32) {
        let due = self.rebinds.partition_point(|t| *t <= elapsed) as u32;
        if due == *seen {
            return;
        }
        let mut nat = self.nat.lock().unwrap_or_else(|p| p.into_inner());
        if nat.sync_generation(due) {
            eprintln!(
                "linkem: t={:.1}s {name}: NAT rebind #{due}: external address now {}, old bindings dropped",
                elapsed.as_secs_f64(),
                nat.external_addr()
            );
        }
        *seen = due;
    }

    fn translate(&self, dir: Dir, pkt: &mut [u8]) -> Result<(), NatDrop> {
        let mut nat = self.nat.lock().unwrap_or_else(|p| p.into_inner());
        match dir {
            Dir::Uplink => nat.outbound(pkt),
            Dir::Downlink => nat.inbound(pkt),
        }
    }
}

enum Read {
    Packet(usize),
    Empty,
}

fn read_packet(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<Read> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 {
        return Ok(if n == 0 {
            Read::Empty
        } else {
            Read::Packet(n as usize)
        });
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(Read::Empty),
        _ => Err(e),
    }
}

fn write_packet(fd: &OwnedFd, pkt: &[u8]) -> std::io::Result<()> {
    // SAFETY: pkt is valid for pkt.len() bytes.
    let n = unsafe { libc::write(fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is readable or `timeout` passes (nanosecond resolution).
fn wait_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd; null sigmask keeps the current mask.
    let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    r > 0 && pfd.revents & libc::POLLIN != 0
}

/// Runs one direction until `stop` is set; returns its totals.
pub fn run(d: Direction) -> Counters {
    let name = d.dir.name();
    let mut cursor = d.timeline.cursor();
    let mut link = Link::new(cursor.initial().clone());
    // Each direction gets its own stream from the one seed.
    let salt = match d.dir {
        Dir::Downlink => 0,
        Dir::Uplink => 0xD1B5_4A32_D192_ED03,
    };
    let mut rng = SplitMix64::new(d.seed ^ salt);
    let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; 65_536];
    let mut total = Counters::default();
    let mut second = Counters::default();
    let mut next_log_s: u64 = 1;
    let mut warned_write = false;
    let mut nat_generation = 0u32;

    loop {
        if d.stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(d.start);

        // Row `t` covers (t-1 s, t]; it shows the rate in force during that second, so it is
        // written before a schedule step at t is applied.
        if elapsed >= Duration::from_secs(next_log_s) {
            if let Some(csv) = &d.csv {
                let row = second.csv_row(next_log_s, name, link.params().rate_kbps);
                let mut w = csv.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(w, "{row}").and_then(|_| w.flush());
            }
            total.add(&second);
            second = Counters::default();
            next_log_s += 1;
        }

        if let Some(p) = cursor.advance(elapsed) {
            eprintln!("linkem: t={:.1}s {name}: {p}", elapsed.as_secs_f64());
            link.set_params(p.clone());
        }
        if let Some(nat) = &d.nat {
            nat.sync(elapsed, name, &mut nat_generation);
        }

        // Send everything that is due (departures are non-decreasing: a FIFO suffices).
        while held.front().is_some_and(|(at, _)| *at <= now) {
            let (_, pkt) = held.pop_front().expect("front exists");
            match write_packet(&d.dst, &pkt) {
                Ok(()) => second.on_sent(pkt.len()),
                Err(e) => {
                    second.write_errors += 1;
                    if !warned_write {
                        eprintln!("linkem: {name}: write to TUN failed: {e} (further errors counted only)");
                        warned_write = true;
                    }
                }
            }
        }

        // Sleep until the next departure, schedule step, log tick, or MAX_WAIT.
        let mut wake = now + MAX_WAIT;
        if let Some((at, _)) = held.front() {
            wake = wake.min(*at);
        }
        if let Some(t) = cursor.next_at() {
            wake = wake.min(d.start + t);
        }
        if let Some(t) = d
            .nat
            .as_ref()
            .and_then(|n| n.rebinds.get(nat_generation as usize))
        {
            wake = wake.min(d.start + *t);
        }
        if d.csv.is_some() {
            wake = wake.min(d.start + Duration::from_secs(next_log_s));
        }
        if !wait_readable(&d.src, wake.saturating_duration_since(Instant::now())) {
            continue;
        }

        for _ in 0..READ_BATCH {
            let len = match read_packet(&d.src, &mut buf) {
                Ok(Read::Packet(n)) => n,
                Ok(Read::Empty) => break,
                Err(e) => {
                    eprintln!("linkem: {name}: read from TUN failed: {e}");
                    std::thread::sleep(MAX_WAIT);
                    break;
                }
            };
            if let Some(nat) = &d.nat {
                if nat.translate(d.dir, &mut buf[..len]).is_err() {
                    second.dropped_nat += 1;
                    continue;
                }
            }
            let now = Instant::now();
            let mut v = link.on_packet(now, len, &mut rng);
            if held.len() >= MAX_HELD && v.departure().is_some() {
                v = linkem::Verdict::DropQueue;
            }
            second.on_verdict(len, &v);
            if let Some(at) = v.departure() {
                held.push_back((at, buf[..len].to_vec()));
            }
        }
    }
    total.add(&second);
    total
}
