#!/usr/bin/env python3
"""Attempts to take a participant's media, for load-tests/attack.sh (issue 7): sniffs the
participants' real RTP to the SFU on the loopback interface (AF_PACKET, root), then from its
own socket (a new address, as a client that moved would have) sends (a) those packets again,
replayed as they were, and (b) RTP with the participants' SSRCs and forged payloads; and with a
raw socket it sends garbage that claims to come from each participant's own address and port.
The SFU must forward none of it, keep sending each participant's media to its real address,
and the consults must not notice. Loopback only, for a fixed time; prints counts and the port
it sent from (attack.sh checks the SFU never moved anyone's media there).

usage: hijack.py SFU_UDP_PORT SECONDS
"""
import os
import random
import socket
import struct
import sys
import time

sfu_port, seconds = int(sys.argv[1]), float(sys.argv[2])
rng = random.Random(11)
ETH_P_ALL = 0x0003

sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
sniff.bind(("lo", 0))
sniff.setblocking(False)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
own.bind(("127.0.0.1", 0))
print(f"hijack: sending from 127.0.0.1:{own.getsockname()[1]}", flush=True)

captured = {}  # (src ip, src port) -> list of RTP packets as sent
ssrcs = {}  # (src ip, src port) -> SSRCs seen from it


def sniff_some():
    for _ in range(500):
        try:
            frame = sniff.recv(65535)
        except BlockingIOError:
            return
        ip = frame[14:]  # loopback frames carry a zeroed Ethernet header
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        src_port, dst_port = struct.unpack("!HH", ip[ihl:ihl + 4])
        payload = ip[ihl + 8:]
        if dst_port != sfu_port or len(payload) < 12 or payload[0] >> 6 != 2:
            continue
        if 64 <= (payload[1] & 0x7F) < 96:
            continue  # RTCP
        src = (socket.inet_ntoa(ip[12:16]), src_port)
        if src[1] == own.getsockname()[1]:
            continue
        keep = captured.setdefault(src, [])
        # Frozen after 20: later packets "from" a participant include our own forgeries.
        if len(keep) >= 20:
            continue
        keep.append(payload)
        ssrcs.setdefault(src, set()).add(payload[8:12])


def participants():
    """Sources that look like a participant: a few SSRCs, used again and again (the other
    attacker's random RTP has a new SSRC in every packet)."""
    return [src for src, packets in captured.items()
            if len(packets) >= 20 and len(ssrcs.get(src, ())) <= 8]


def forged_from(src, payload):
    """An IPv4+UDP datagram that claims to come from `src` (checksum 0: none, legal in IPv4)."""
    udp = struct.pack("!HHHH", src[1], sfu_port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), rng.randrange(65536), 0, 64, 17, 0,
                     socket.inet_aton(src[0]), socket.inet_aton("127.0.0.1"))
    return ip + udp


counts = {"replayed": 0, "forged_ssrc": 0, "spoofed_source": 0}
end = time.time() + seconds
while time.time() < end:
    sniff_some()
    for src in participants():
        p = rng.choice(captured[src])
        try:
            own.sendto(p, ("127.0.0.1", sfu_port))  # replay from a new address
            counts["replayed"] += 1
            forged = p[:12] + os.urandom(max(0, len(p) - 12))  # its SSRC, a made-up payload
            own.sendto(forged, ("127.0.0.1", sfu_port))
            counts["forged_ssrc"] += 1
            garbage = p[:2] + os.urandom(rng.randrange(10, 400))
            raw.sendto(forged_from(src, garbage), ("127.0.0.1", 0))  # from the victim's own address
            counts["spoofed_source"] += 1
        except OSError:
            pass
    time.sleep(0.005)
victims = participants()
print(f"hijack: {len(victims)} participant addresses and "
      f"{sum(len(ssrcs[v]) for v in victims)} SSRCs seen; sent "
      + ", ".join(f"{v} {k}" for k, v in counts.items()), flush=True)
