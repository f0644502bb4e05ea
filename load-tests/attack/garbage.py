#!/usr/bin/env python3
"""Hostile datagrams at the SFU's media port, for load-tests/attack.sh: random bytes,
truncated and malformed RTP/RTCP, RTP with broken header-extension lengths, STUN with a bad
MESSAGE-INTEGRITY (and with a made-up ufrag), DTLS records of garbage; plus garbage on the
ICE-TCP port when one is given. Sends to loopback only, for a fixed time, then prints counts.

usage: garbage.py HOST UDP_PORT SECONDS [TCP_PORT]
"""
import os
import random
import socket
import struct
import sys
import time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
tcp_port = int(sys.argv[4]) if len(sys.argv) > 4 else None
assert host.startswith("127."), "this tool only sends to loopback"
rng = random.Random(7)


def rtp(ext_len_words=None, truncate=None):
    b = bytearray(struct.pack("!BBHII", 0x90 if ext_len_words is not None else 0x80, 96,
                              rng.randrange(65536), rng.randrange(2**32), rng.randrange(2**32)))
    if ext_len_words is not None:
        # One-byte extension profile with a length that overruns the packet.
        b += struct.pack("!HH", 0xBEDE, ext_len_words) + os.urandom(4)
    b += os.urandom(rng.randrange(0, 1200))
    return bytes(b[:truncate]) if truncate is not None else bytes(b)


def rtcp():
    kind = rng.choice([200, 201, 202, 203, 204, 205, 206, 207])
    length = rng.randrange(0, 200)  # in words, rarely what follows
    return struct.pack("!BBH", 0x80 | rng.randrange(32), kind, length) + os.urandom(rng.randrange(0, 64))


def stun(ufrag):
    username = f"{ufrag}:remote".encode()
    pad = (4 - len(username) % 4) % 4
    attrs = struct.pack("!HH", 0x0006, len(username)) + username + b"\0" * pad
    attrs += struct.pack("!HH", 0x0008, 20) + os.urandom(20)  # MESSAGE-INTEGRITY, wrong
    return struct.pack("!HHI", 0x0001, len(attrs), 0x2112A442) + os.urandom(12) + attrs


def dtls():
    return bytes([rng.choice([20, 21, 22, 23]), 0xFE, 0xFD]) + os.urandom(rng.randrange(8, 300))


makers = [
    lambda: os.urandom(rng.randrange(1, 1500)),
    lambda: rtp(),
    lambda: rtp(truncate=rng.randrange(1, 12)),
    lambda: rtp(ext_len_words=rng.randrange(50, 65535)),
    rtcp,
    lambda: stun("nosuchufrag"),
    lambda: stun(os.urandom(4).hex()),
    dtls,
    lambda: b"",
]

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
tcp_conns = 0
end = time.time() + seconds
while time.time() < end:
    for _ in range(200):
        try:
            sock.sendto(rng.choice(makers)(), (host, port))
            sent += 1
        except OSError:
            pass
    if tcp_port and sent % 2000 < 200:
        try:
            with socket.create_connection((host, tcp_port), timeout=1) as c:
                # A frame length that lies, then a STUN request for nobody, then garbage.
                c.sendall(struct.pack("!H", 60000) + os.urandom(100))
                tcp_conns += 1
        except OSError:
            pass
    time.sleep(0.01)  # ~20,000 datagrams per second
print(f"garbage: sent {sent} datagrams, opened {tcp_conns} ICE-TCP connections in {seconds:.0f} s")
