#!/usr/bin/env python3
"""Stand-ins for a display server and its client, and a UDP ping for truth.

  standin.py server PORT LOG       streams 30 frames/s to each client; logs each
                                   frame's application round trip (JSON lines)
  standin.py client HOST PORT LOG  answers every frame; stdin: "reconnect S"
                                   closes, waits S seconds, connects again, and
                                   logs the true downtime; "quit"
  standin.py udp-echo PORT
  standin.py udp-ping HOST PORT LOG  every 100 ms; logs each round trip
Times are wall-clock seconds (the agent's clock); round trips in ms.
"""
import json
import random
import socket
import struct
import sys
import threading
import time

FRAME = struct.Struct("!IQd")  # payload length, sequence, send time
ANSWER = struct.Struct("!Qd")


def log_line(f, lock, obj):
    with lock:
        f.write(json.dumps(obj) + "\n")
        f.flush()


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def server(port, log_path):
    log, lock = open(log_path, "a"), threading.Lock()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)

    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = {}
        stop = threading.Event()

        def reader():
            try:
                while True:
                    seq, t = ANSWER.unpack(recv_exact(conn, ANSWER.size))
                    now = time.time()
                    log_line(log, lock, {"t": now, "app_rtt_ms": (now - t) * 1000})
            except (OSError, ConnectionError):
                stop.set()

        threading.Thread(target=reader, daemon=True).start()
        rng = random.Random(7)
        seq, next_at = 0, time.monotonic()
        try:
            while not stop.is_set():
                payload = bytes(rng.randint(800, 6000))
                conn.sendall(FRAME.pack(len(payload), seq, time.time()) + payload)
                seq += 1
                next_at += 1 / 30
                time.sleep(max(0.0, next_at - time.monotonic()))
        except OSError:
            pass
        conn.close()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def client(host, port, log_path):
    log, lock = open(log_path, "a"), threading.Lock()
    state = {"sock": None}

    def connect():
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state["sock"] = s
        return s

    def run(s):
        try:
            while True:
                n, seq, t = FRAME.unpack(recv_exact(s, FRAME.size))
                recv_exact(s, n)
                s.sendall(ANSWER.pack(seq, t))
        except (OSError, ConnectionError):
            pass

    threading.Thread(target=run, args=(connect(),), daemon=True).start()
    print("connected", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            return
        if words[0] == "reconnect":
            old = state["sock"]
            closed_at = time.time()
            old.shutdown(socket.SHUT_RDWR)
            old.close()
            time.sleep(float(words[1]))
            s = connect()
            connected_at = time.time()
            threading.Thread(target=run, args=(s,), daemon=True).start()
            log_line(log, lock, {"closed_at": closed_at, "connected_at": connected_at})
            print(json.dumps({"downtime_ms": (connected_at - closed_at) * 1000}), flush=True)


def udp_echo(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, addr = s.recvfrom(64)
        s.sendto(data, addr)


def udp_ping(host, port, log_path):
    log, lock = open(log_path, "a"), threading.Lock()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))

    def reader():
        while True:
            data = s.recv(64)
            now = time.time()
            _, t = struct.unpack("!Qd", data[:16])
            log_line(log, lock, {"t": t, "udp_rtt_ms": (now - t) * 1000})

    threading.Thread(target=reader, daemon=True).start()
    seq, next_at = 0, time.monotonic()
    while True:
        s.send(struct.pack("!Qd", seq, time.time()))
        seq += 1
        next_at += 0.1
        time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "server":
        server(int(sys.argv[2]), sys.argv[3])
    elif cmd == "client":
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "udp-echo":
        udp_echo(int(sys.argv[2]))
    elif cmd == "udp-ping":
        udp_ping(sys.argv[2], int(sys.argv[3]), sys.argv[4])
