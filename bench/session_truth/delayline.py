#!/usr/bin/env python3
"""A user-space delay line between two TUN devices.

Opens TUN devices A and B (raw IP, no packet info) in the caller's network
namespace, prints "ready", and forwards every packet from one to the other,
holding it half the round trip per direction, dropping a share of them, and
adding jitter without reordering. The caller moves the devices into their
namespaces after "ready".

Commands on stdin, one per line, each answered "ok":
  set RTT_MS LOSS_PCT JITTER_MS   round trip, loss per direction, ± jitter on the round trip
  cut / uncut                     drop everything / stop dropping
  quit
"""
import fcntl
import heapq
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    a, b = open_tun(sys.argv[1]), open_tun(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    half, loss, jitter, cut = 0.0, 0.0, 0.0, False
    out = {a: b, b: a}
    last_release = {a: 0.0, b: 0.0}
    queue = []  # (release time, order, destination fd, packet)
    order = 0
    forwarded = dropped = 0
    print("ready", flush=True)
    stdin = sys.stdin.fileno()
    while True:
        now = time.monotonic()
        timeout = max(0.0, queue[0][0] - now) if queue else 1.0
        ready, _, _ = select.select([a, b, stdin], [], [], timeout)
        now = time.monotonic()
        for fd in ready:
            if fd == stdin:
                line = sys.stdin.readline()
                if not line or line.strip() == "quit":
                    print(f"forwarded {forwarded} dropped {dropped}", file=sys.stderr)
                    return
                words = line.split()
                if words[0] == "set":
                    half = float(words[1]) / 2000.0
                    loss = float(words[2]) / 100.0
                    jitter = float(words[3]) / 2000.0
                elif words[0] == "cut":
                    cut = True
                elif words[0] == "uncut":
                    cut = False
                print("ok", flush=True)
                continue
            while True:
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if cut or (loss > 0 and rng.random() < loss):
                    dropped += 1
                    continue
                # Each direction holds half the round trip, ± half the jitter,
                # and never releases a packet before the one ahead of it.
                release = now + half + (rng.uniform(-jitter, jitter) if jitter > 0 else 0.0)
                release = max(release, last_release[fd])
                last_release[fd] = release
                order += 1
                heapq.heappush(queue, (release, order, out[fd], pkt))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, dst, pkt = heapq.heappop(queue)
            try:
                os.write(dst, pkt)
                forwarded += 1
            except OSError:
                dropped += 1


if __name__ == "__main__":
    main()
