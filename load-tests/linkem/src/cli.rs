//! Command line of the `linkem` binary, parsed by hand.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: linkem --profile FILE.toml --ns-a NAME --ns-b NAME [options]

Creates network namespaces NAME-a (server side) and NAME-b (weak client side), joins them through
one TUN device in each, and moves IP packets between them as the profile says. a -> b is the
downlink, b -> a the uplink. Prints `LINKEM_READY a=<addr-a> b=<addr-b>` once packets flow.
Deletes the namespaces it created on exit (end of --duration, error, SIGINT, SIGTERM, SIGHUP).

options:
  --profile FILE      profile (TOML), see load-tests/profiles/
  --ns-a NAME         server-side namespace (created unless --keep-ns-a)
  --ns-b NAME         client-side namespace (always created; must not exist yet)
  --addr-a IP         address in ns-a, default 198.51.100.1 (a /30 with addr-b)
  --addr-b IP         address in ns-b, default 198.51.100.2
  --duration SECS     stop after SECS seconds (default: run until a signal)
  --log-csv FILE      one row per second and direction with counters
  --keep-ns-a         ns-a already exists (e.g. the SFU runs in it): use it, never delete it
  --seed N            PRNG seed for loss and jitter (default 1)
  --exit-with-parent  stop (and clean up) when the parent process dies
  -h, --help          this text
";

/// Name of the TUN device created in each namespace.
pub const TUN_NAME: &str = "linkem0";

#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub profile: PathBuf,
    pub ns_a: String,
    pub ns_b: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
    pub duration: Option<Duration>,
    pub log_csv: Option<PathBuf>,
    pub keep_ns_a: bool,
    pub seed: u64,
    pub exit_with_parent: bool,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Args),
    Help,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}\n(run `linkem --help` for usage)")]
pub struct CliError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// Namespace names become file names under /var/run/netns: keep them boring.
pub fn check_ns_name(what: &str, name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        err(format!(
            "{what} {name:?}: use 1-32 characters from [A-Za-z0-9._-], not starting with '.' or '-'"
        ))
    }
}

/// Only the documentation ranges 198.51.100.0/24 and 203.0.113.0/24 are allowed.
pub fn check_addr(what: &str, a: Ipv4Addr) -> Result<(), CliError> {
    let o = a.octets();
    if (o[0], o[1], o[2]) == (198, 51, 100) || (o[0], o[1], o[2]) == (203, 0, 113) {
        Ok(())
    } else {
        err(format!(
            "{what} {a}: only 198.51.100.0/24 and 203.0.113.0/24 may be used"
        ))
    }
}

/// Both addresses must be the two host addresses of one /30.
pub fn check_pair(a: Ipv4Addr, b: Ipv4Addr) -> Result<(), CliError> {
    let (ua, ub) = (u32::from(a), u32::from(b));
    if ua & !3 != ub & !3 || ua == ub {
        return err(format!(
            "--addr-a {a} and --addr-b {b} must be two different addresses of one /30"
        ));
    }
    for x in [ua, ub] {
        if x & 3 == 0 || x & 3 == 3 {
            return err(format!(
                "{} is the network or broadcast address of its /30; use .1/.2, .5/.6, ...",
                Ipv4Addr::from(x)
            ));
        }
    }
    Ok(())
}

impl Args {
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, CliError> {
        let mut profile = None;
        let mut ns_a = None;
        let mut ns_b = None;
        let mut addr_a = Ipv4Addr::new(198, 51, 100, 1);
        let mut addr_b = Ipv4Addr::new(198, 51, 100, 2);
        let mut duration = None;
        let mut log_csv = None;
        let mut keep_ns_a = false;
        let mut seed = 1u64;
        let mut exit_with_parent = false;

        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            // Accept both `--opt value` and `--opt=value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, CliError> {
                match inline.clone().or_else(|| it.next()) {
                    Some(v) => Ok(v),
                    None => err(format!("{name} needs a value")),
                }
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--profile" => profile = Some(PathBuf::from(value("--profile")?)),
                "--ns-a" => ns_a = Some(value("--ns-a")?),
                "--ns-b" => ns_b = Some(value("--ns-b")?),
                "--addr-a" | "--addr-b" => {
                    let v = value(&flag)?;
                    let ip: Ipv4Addr = v
                        .parse()
                        .or_else(|_| err(format!("{flag} {v:?} is not an IPv4 address")))?;
                    if flag == "--addr-a" {
                        addr_a = ip
                    } else {
                        addr_b = ip
                    }
                }
                "--duration" => {
                    let v = value("--duration")?;
                    let secs: f64 = v
                        .parse()
                        .or_else(|_| err(format!("--duration {v:?} is not a number")))?;
                    if !(secs.is_finite() && secs > 0.0 && secs < 1e7) {
                        return err(format!("--duration must be > 0 seconds, got {v}"));
                    }
                    duration = Some(Duration::from_secs_f64(secs));
                }
                "--log-csv" => log_csv = Some(PathBuf::from(value("--log-csv")?)),
                "--seed" => {
                    let v = value("--seed")?;
                    seed = v
                        .parse()
                        .or_else(|_| err(format!("--seed {v:?} is not an unsigned integer")))?;
                }
                "--keep-ns-a" | "--exit-with-parent" if inline.is_some() => {
                    return err(format!("{flag} takes no value"));
                }
                "--keep-ns-a" => keep_ns_a = true,
                "--exit-with-parent" => exit_with_parent = true,
                _ => return err(format!("unknown argument {arg:?}")),
            }
        }

        let Some(profile) = profile else {
            return err("--profile is required");
        };
        let Some(ns_a) = ns_a else {
            return err("--ns-a is required");
        };
        let Some(ns_b) = ns_b else {
            return err("--ns-b is required");
        };
        check_ns_name("--ns-a", &ns_a)?;
        check_ns_name("--ns-b", &ns_b)?;
        if ns_a == ns_b {
            return err("--ns-a and --ns-b must differ");
        }
        check_addr("--addr-a", addr_a)?;
        check_addr("--addr-b", addr_b)?;
        check_pair(addr_a, addr_b)?;
        Ok(Command::Run(Args {
            profile,
            ns_a,
            ns_b,
            addr_a,
            addr_b,
            duration,
            log_csv,
            keep_ns_a,
            seed,
            exit_with_parent,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, CliError> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    fn args(s: &str) -> Args {
        match parse(s).unwrap() {
            Command::Run(a) => a,
            Command::Help => panic!("help"),
        }
    }

    fn e(s: &str) -> String {
        parse(s).unwrap_err().0
    }

    #[test]
    fn minimal_and_full() {
        let a = args("--profile p.toml --ns-a lkA --ns-b lkB");
        assert_eq!(a.profile, PathBuf::from("p.toml"));
        assert_eq!((a.ns_a.as_str(), a.ns_b.as_str()), ("lkA", "lkB"));
        assert_eq!(a.addr_a, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(a.addr_b, Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(
            (a.duration, a.log_csv.clone(), a.keep_ns_a, a.seed),
            (None, None, false, 1)
        );

        let a = args(
            "--profile=x.toml --ns-a s --ns-b c --addr-a 203.0.113.6 --addr-b=203.0.113.5 \
             --duration 2.5 --log-csv /tmp/l.csv --keep-ns-a --seed 99 --exit-with-parent",
        );
        assert_eq!(a.addr_a, Ipv4Addr::new(203, 0, 113, 6));
        assert_eq!(a.duration, Some(Duration::from_millis(2500)));
        assert_eq!(a.log_csv, Some(PathBuf::from("/tmp/l.csv")));
        assert!(a.keep_ns_a && a.exit_with_parent);
        assert_eq!(a.seed, 99);
        assert_eq!(parse("--ns-a x --help").unwrap(), Command::Help);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(e("--ns-a a --ns-b b").contains("--profile is required"));
        assert!(e("--profile p --ns-b b").contains("--ns-a is required"));
        assert!(e("--profile p --ns-a a --ns-b a").contains("must differ"));
        assert!(e("--profile p --ns-a a --ns-b b --bogus").contains("unknown argument"));
        assert!(e("--profile p --ns-a a --ns-b").contains("--ns-b needs a value"));
        assert!(e("--profile p --ns-a ../etc --ns-b b").contains("--ns-a"));
        assert!(e("--profile p --ns-a a --ns-b b --duration 0").contains("--duration must be > 0"));
        assert!(e("--profile p --ns-a a --ns-b b --duration x").contains("not a number"));
        assert!(e("--profile p --ns-a a --ns-b b --seed -1").contains("--seed"));
        assert!(e("--profile p --ns-a a --ns-b b --keep-ns-a=1").contains("takes no value"));
    }

    #[test]
    fn only_documentation_ranges_and_a_proper_slash_30() {
        let base = "--profile p --ns-a a --ns-b b";
        let m = e(&format!("{base} --addr-a 192.0.2.1 --addr-b 192.0.2.2"));
        assert!(m.contains("only 198.51.100.0/24 and 203.0.113.0/24"), "{m}");
        assert!(e(&format!("{base} --addr-a 10.0.0.1")).contains("only 198.51.100.0/24"));
        assert!(e(&format!("{base} --addr-a 198.51.100.5")).contains("one /30"));
        assert!(e(&format!("{base} --addr-a 198.51.100.2")).contains("one /30"));
        assert!(e(&format!("{base} --addr-a 198.51.100.3")).contains("broadcast"));
        assert!(e(&format!("{base} --addr-a 198.51.100.256")).contains("not an IPv4"));
        let a = args(&format!(
            "{base} --addr-a 198.51.100.9 --addr-b 198.51.100.10"
        ));
        assert_eq!(a.addr_b, Ipv4Addr::new(198, 51, 100, 10));
    }
}
