//! Namespaces, `ip` commands and TUN devices.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `ip ARGS...`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run `ip {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn ns_path(name: &str) -> String {
    format!("/var/run/netns/{name}")
}

pub fn ns_exists(name: &str) -> bool {
    Path::new(&ns_path(name)).exists()
}

/// Deletes, on drop, exactly the namespaces this process created.
#[derive(Default)]
pub struct NetnsGuard {
    created: Vec<String>,
}

impl NetnsGuard {
    /// `ip netns add NAME`; fails if it already exists (it is then not ours to delete).
    pub fn create(&mut self, name: &str) -> Result<()> {
        if ns_exists(name) {
            bail!("network namespace {name:?} already exists; linkem only uses namespaces it creates (except ns-a with --keep-ns-a)");
        }
        ip(&["netns", "add", name])?;
        self.created.push(name.to_string());
        Ok(())
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for name in self.created.drain(..).rev() {
            match ip(&["netns", "del", &name]) {
                Ok(()) => eprintln!("linkem: deleted namespace {name}"),
                Err(e) => eprintln!("linkem: WARNING: could not delete namespace {name}: {e:#}"),
            }
        }
    }
}

#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens a TUN device `ifname` (IFF_TUN | IFF_NO_PI, non-blocking) inside namespace `ns`.
///
/// The work happens on a short-lived thread that setns()es into the namespace, so the rest of
/// the process stays where it is. The fd keeps referring to the device in `ns` afterwards.
pub fn open_tun_in(ns: &str, ifname: &str) -> Result<OwnedFd> {
    if ifname.len() >= libc::IFNAMSIZ {
        bail!("interface name {ifname:?} too long");
    }
    let (ns, ifname) = (ns.to_string(), ifname.to_string());
    std::thread::Builder::new()
        .name(format!("tun-{ns}"))
        .spawn(move || -> Result<OwnedFd> {
            let nsf = File::open(ns_path(&ns)).with_context(|| format!("open {}", ns_path(&ns)))?;
            // SAFETY: plain syscalls on fds we own; ifreq is a correctly sized, zeroed struct.
            let fd = unsafe {
                if libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error()).context(format!("setns({ns})"));
                }
                let fd = libc::open(
                    c"/dev/net/tun".as_ptr(),
                    libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
                );
                if fd < 0 {
                    return Err(std::io::Error::last_os_error()).context("open /dev/net/tun");
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let mut req = IfReqFlags {
                    name: [0; libc::IFNAMSIZ],
                    flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
                    _pad: [0; 22],
                };
                req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
                if libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) < 0 {
                    return Err(std::io::Error::last_os_error())
                        .context(format!("TUNSETIFF {ifname} in namespace {ns}"));
                }
                fd
            };
            // No IPv6 on the device (no link-local address, no router solicitations on the
            // emulated link). /proc/sys/net shows the namespace of the calling thread. Best effort:
            // the file is absent when the kernel has no IPv6.
            let _ = std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
                "1",
            );
            Ok(fd)
        })
        .context("spawn thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("TUN setup thread panicked"))?
}

/// Brings up `lo` and the TUN device in `ns`, with `addr/30`.
pub fn configure(ns: &str, ifname: &str, addr: std::net::Ipv4Addr) -> Result<()> {
    ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{addr}/30"),
        "dev",
        ifname,
    ])?;
    ip(&["-n", ns, "link", "set", "dev", ifname, "up", "mtu", "1500"])?;
    Ok(())
}
