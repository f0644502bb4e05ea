//! Kernel receive timestamps (`SO_TIMESTAMPNS`) on the bots' sockets. Forwarding latency ends
//! when a datagram reaches the bot's socket, not when the bot's task gets round to reading it:
//! with a hundred bots sharing a core, that wait was most of the measured p99 (2-3 ms for the
//! bare str0m loop as well as for the SFU).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Asks the kernel to timestamp every datagram this socket receives.
pub fn enable(socket: &std::net::UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to a c_int of the stated length.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram if one is queued: (length, source, when the kernel received it). Without a
/// timestamp (not enabled), the time it was read.
pub fn try_recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    socket.try_io(Interest::READABLE, || recv(socket.as_raw_fd(), buf))
}

fn recv(fd: i32, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut addr: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64s: cmsg headers need their alignment.
    let mut control = [0u64; 8];
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: msg points at live buffers of the stated sizes for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut at = now;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs; the macros walk
    // them within that length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let kernel = UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                // The wall clock only for the wait in the socket, read back to back with the
                // monotonic one: a clock step cannot make more than a second of it.
                if let Ok(waited) = wall.duration_since(kernel) {
                    at = now - waited.min(Duration::from_secs(1));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, socket_addr(&addr)?, at))
}

fn socket_addr(a: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match a.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: ss_family says this storage holds a sockaddr_in.
            let v4: &libc::sockaddr_in = unsafe { &*(a as *const libc::sockaddr_storage).cast() };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says this storage holds a sockaddr_in6.
            let v6: &libc::sockaddr_in6 = unsafe { &*(a as *const libc::sockaddr_storage).cast() };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        f => Err(io::Error::other(format!("address family {f}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_kernel_stamp_is_when_the_datagram_arrived_not_when_it_was_read() {
        let std_rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std_rx.set_nonblocking(true).unwrap();
        enable(&std_rx).unwrap();
        let rx = UdpSocket::from_std(std_rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // The kernel turns receive stamping on lazily (a deferred static key), and a datagram
        // queued before that is stamped when read: seen once in CI and one local run in three
        // (51 ms, the read). One datagram first, as a bot's first packets are.
        tx.send_to(b"warm-up", rx.local_addr().unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        rx.readable().await.unwrap();
        try_recv(&rx, &mut [0u8; 64]).unwrap();
        let sent = Instant::now();
        tx.send_to(b"hello", rx.local_addr().unwrap())
            .await
            .unwrap();
        // Read it 50 ms later: the stamp stays near the send.
        tokio::time::sleep(Duration::from_millis(50)).await;
        rx.readable().await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from, at) = try_recv(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, tx.local_addr().unwrap());
        let after_send = at.saturating_duration_since(sent);
        assert!(after_send < Duration::from_millis(20), "{after_send:?}");
        assert!(
            at >= sent - Duration::from_millis(5),
            "stamp before the send"
        );
        // Nothing more queued: WouldBlock, not a stale datagram.
        assert_eq!(
            try_recv(&rx, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
