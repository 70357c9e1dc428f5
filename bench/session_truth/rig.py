#!/usr/bin/env python3
"""Session truth rig: the real agent on both ends of a display session, against ground truth.

Two network namespaces, a display server's (the VDI guest) and a thin client's, are joined by
delayline.py: TUN devices and a user-space forwarder that holds each packet half the round trip
per direction, drops a share and adds jitter. standin.py streams 30 frames/s from the server;
the client answers every frame. Truth is a UDP ping through the same line every 100 ms (and
each frame's application round trip). deskpulse-agent runs in each namespace with its default
session settings (`--print`), and this script prints its windows next to the truth for a
matrix of round trip, loss and jitter, then the drop tests: a 30 s path cut with the sockets
kept open, a 1.5 s reconnect, and a 40 s drop (beyond the reconnect window).

Needs root (namespaces, TUN). Runs for many minutes; not part of CI.
  python3 bench/session_truth/rig.py --agent build-rel/agent/deskpulse-agent [--interval 30]
      [--quick] [--record DIR]
--record writes the thin client's tcp_info sequence and handshake samples for two conditions
as fixtures for tests/agent/probes/session_probe_test.cc.
"""
import argparse
import json
import math
import os
import queue
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tool_version  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NS_S, NS_C = "dpts", "dptc"
TUN_S, TUN_C = "dptS", "dptC"
ADDR_S, ADDR_C = "10.77.0.1", "10.77.0.2"
PORT = 3389


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)


def pct(values, q):
    """Nearest rank, as the agent computes it."""
    if not values:
        return None
    v = sorted(values)
    rank = max(1, min(len(v), math.ceil(q * len(v))))
    return v[rank - 1]


class Agent:
    """One deskpulse-agent in a namespace; its reports arrive on a queue."""

    def __init__(self, binary, ns, role, interval, workdir):
        self.name = role
        state = os.path.join(workdir, role)
        os.makedirs(state, exist_ok=True)
        cfg = os.path.join(workdir, role + ".toml")
        with open(cfg, "w") as f:
            f.write(f"""[agent]
state_dir = "{state}"
interval_s = {interval}
role = "{role}"
site = "rig"
pool = "rig"
machine_id_file = "{state}/machine-id"
[probes.boot]
enabled = false
[probes.peripherals]
enabled = false
[probes.stability]
enabled = false
""")
        with open(os.path.join(state, "machine-id"), "w") as f:
            f.write(("%032x" % abs(hash(role)))[:32] + "\n")
        self.reports = queue.Queue()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, binary, "--config", cfg, "--print"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, role + ".log"), "w"),
            text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.reports.put(json.loads(line))
            except ValueError:
                pass

    def next_report(self, not_before_ms, timeout):
        """The next report made at or after not_before_ms."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                r = self.reports.get(timeout=1)
            except queue.Empty:
                continue
            if r["observed_at_unix_ms"] >= not_before_ms:
                return r
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def window_of(report):
    """The agent's session window for the display session (most samples)."""
    best = None
    for w in report.get("sessions", []):
        if w.get("source") == "LATENCY_SOURCE_ACTIVE_CONNECT":
            continue
        if best is None or w.get("rtt_samples", 0) > best.get("rtt_samples", 0):
            best = w
    return best


def read_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


TCPI = struct.Struct("8B24I")


def handshake_rtt_us(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((addr, port))
        info = TCPI.unpack(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCPI.size))
        rtt, total_retrans = info[8 + 15], info[8 + 23]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return None if total_retrans else rtt
    except OSError:
        return None
    finally:
        s.close()


SS_FIELDS = {
    "rtt_us": (r"\brtt:([\d.]+)/", lambda v: int(float(v) * 1000)),
    "rttvar_us": (r"\brtt:[\d.]+/([\d.]+)", lambda v: int(float(v) * 1000)),
    "min_rtt_us": (r"\bminrtt:([\d.]+)", lambda v: int(float(v) * 1000)),
    "unacked": (r"\bunacked:(\d+)", int),
    "last_ack_recv_ms": (r"\blastack:(\d+)", int),
    "backoff": (r"\bbackoff:(\d+)", int),
    "rto_us": (r"\brto:([\d.]+)", lambda v: int(float(v) * 1000)),
    "total_retrans": (r"\bretrans:\d+/(\d+)", int),
    "data_segs_out": (r"\bdata_segs_out:(\d+)", int),
    "data_segs_in": (r"\bdata_segs_in:(\d+)", int),
}


def record_fixture(path, seconds, truth_log, t_from):
    """The thin client's session socket (ss -ti) and a handshake to the peer, every second."""
    ticks = []
    end = time.time() + seconds
    while time.time() < end:
        t = time.time()
        out = subprocess.run(["ip", "netns", "exec", NS_C, "ss", "-tinH", "state", "established",
                              "dst", f"{ADDR_S}:{PORT}"], capture_output=True, text=True).stdout
        conn = {}
        for key, (rx, conv) in SS_FIELDS.items():
            m = re.search(rx, out)
            conn[key] = conv(m.group(1)) if m else 0
        probe = None
        if len(ticks) % 5 == 0:  # the agent's default: a handshake every 5 s
            r = subprocess.run(["ip", "netns", "exec", NS_C, sys.executable, __file__,
                                "--handshake", ADDR_S, str(PORT)],
                               capture_output=True, text=True).stdout.strip()
            probe = int(r) if r.isdigit() else None
        ticks.append({"t_ms": int(t * 1000), "conn": conn, "probe_rtt_us": probe})
        time.sleep(max(0, 1 - (time.time() - t)))
    udp = [p["udp_rtt_ms"] for p in read_jsonl(truth_log) if p["t"] >= t_from]
    with open(path, "w") as f:
        json.dump({"truth_udp_p50_ms": pct(udp, 0.5), "truth_udp_p95_ms": pct(udp, 0.95),
                   "ticks": ticks}, f, indent=1)
    print(f"recorded {path}: {len(ticks)} ticks, truth p50 {pct(udp, 0.5):.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    tool_version.add_version(ap)
    ap.add_argument("--agent")
    ap.add_argument("--interval", type=int, default=30, help="agent report interval, s")
    ap.add_argument("--quick", action="store_true", help="two conditions and the drop tests")
    ap.add_argument("--record", help="write tcp_info fixtures into this folder")
    ap.add_argument("--conditions", help='only these, e.g. "20,5,0;50,0,20" (RTT ms, loss %%, jitter ms)')
    ap.add_argument("--no-drops", action="store_true", help="skip the drop tests")
    ap.add_argument("--handshake", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.handshake:
        print(handshake_rtt_us(args.handshake[0], int(args.handshake[1])) or "")
        return 0
    if not args.agent:
        ap.error("--agent is required")
    binary = os.path.abspath(args.agent)
    work = tempfile.mkdtemp(prefix="session-truth-")
    procs = []
    for ns in (NS_S, NS_C):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    line = subprocess.Popen([sys.executable, os.path.join(HERE, "delayline.py"), TUN_S, TUN_C],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(line)
    assert line.stdout.readline().strip() == "ready"

    def ctl(cmd):
        line.stdin.write(cmd + "\n")
        line.stdin.flush()
        assert line.stdout.readline().strip() == "ok"

    agents = []
    try:
        for ns, tun, me, peer in ((NS_S, TUN_S, ADDR_S, ADDR_C), (NS_C, TUN_C, ADDR_C, ADDR_S)):
            sh(f"ip netns add {ns} && ip -n {ns} link set lo up && ip link set {tun} netns {ns}")
            sh(f"ip -n {ns} addr add {me} peer {peer} dev {tun} && ip -n {ns} link set {tun} up")
        app_log, udp_log, rec_log = (os.path.join(work, n) for n in ("app.jsonl", "udp.jsonl",
                                                                      "reconnects.jsonl"))
        standin = os.path.join(HERE, "standin.py")
        run_in = lambda ns, *a, **kw: subprocess.Popen(["ip", "netns", "exec", ns, sys.executable,
                                                        standin, *a], **kw)
        procs.append(run_in(NS_S, "server", str(PORT), app_log))
        procs.append(run_in(NS_S, "udp-echo", "7777"))
        time.sleep(0.5)
        client = run_in(NS_C, "client", ADDR_S, str(PORT), rec_log, stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True)
        procs.append(client)
        assert client.stdout.readline().strip() == "connected"
        procs.append(run_in(NS_C, "udp-ping", ADDR_S, "7777", udp_log))
        iv = args.interval
        server_agent = Agent(binary, NS_S, "vdi_guest", iv, work)
        client_agent = Agent(binary, NS_C, "thin_client", iv, work)
        agents = [server_agent, client_agent]

        print(f"agent {binary}, report interval {iv} s, work {work}")
        print()
        print("| RTT | loss | jitter | end | truth p50 | agent p50 | truth p95 | agent p95 | "
              "agent max | jitter (truth / agent) | retrans | samples | p50 | p95 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        matrix = [(r, l, 0) for r in (0, 20, 50, 120, 250) for l in (0, 2, 5)]
        matrix += [(50, 0, 20), (120, 0, 40)]
        if args.quick:
            matrix = [(20, 0, 0), (120, 2, 0)]
        if args.conditions:
            matrix = [tuple(int(x) for x in c.split(",")) for c in args.conditions.split(";")]
        failures = 0
        for rtt, loss, jit in matrix:
            ctl(f"set {rtt} {loss} {jit}")
            settle_ms = int(time.time() * 1000) + 3000
            if args.record and (rtt, loss, jit) in ((20, 0, 0), (50, 2, 0)):
                time.sleep(3)
                record_fixture(os.path.join(args.record, f"thin-client-rtt{rtt}-loss{loss}.json"),
                               60, udp_log, time.time())
            for a in agents:
                r = a.next_report(settle_ms + iv * 1000, timeout=3 * iv + 10)
                if r is None:
                    print(f"| {rtt} | {loss}% | ±{jit} | {a.name} | no report |")
                    failures += 1
                    continue
                end_ms = r["observed_at_unix_ms"]
                start_ms = end_ms - iv * 1000
                udp = [p["udp_rtt_ms"] for p in read_jsonl(udp_log)
                       if start_ms <= p["t"] * 1000 < end_ms]
                w = window_of(r)
                t50, t95 = pct(udp, 0.5), pct(udp, 0.95)
                if w is None or "rtt_p50_us" not in w or t50 is None:
                    print(f"| {rtt} | {loss}% | ±{jit} | {a.name} | {t50} | none |")
                    failures += 1
                    continue
                a50, a95, amax = (w[k] / 1000 for k in ("rtt_p50_us", "rtt_p95_us", "rtt_max_us"))
                diffs = [abs(x - y) for x, y in zip(udp, udp[1:])]
                ok50 = abs(a50 - t50) <= max(0.10 * t50, 2)
                ok95 = abs(a95 - t95) <= max(0.15 * t95, 3)
                if jit == 0:
                    failures += (not ok50) + (not ok95)
                else:
                    failures += not ok50
                print(f"| {rtt} ms | {loss}% | ±{jit} | {a.name} | {t50:.1f} | {a50:.1f} | "
                      f"{t95:.1f} | {a95:.1f} | {amax:.1f} | "
                      f"{sum(diffs) / max(1, len(diffs)):.1f} / {w.get('jitter_us', 0) / 1000:.1f} | "
                      f"{w.get('retransmit_ppm', 0) / 10000:.2f}% | {w.get('rtt_samples')} | "
                      f"{'ok' if ok50 else 'MISS'} | {'ok' if ok95 else ('MISS' if jit == 0 else '-')} |",
                      flush=True)

        if args.no_drops:
            print()
            print(f"{failures} rows missed")
            return 1 if failures else 0
        # Drop tests, at 50 ms and no loss.
        ctl("set 50 0 0")
        time.sleep(iv + 2)
        print()
        print("| drop test | end | truth | agent |")
        print("|---|---|---|---|")
        cut_at = time.time()
        ctl("cut")
        time.sleep(30)
        ctl("uncut")
        uncut_at = time.time()
        for a in agents:
            stall = None
            end = time.time() + 150
            while stall is None and time.time() < end:
                r = a.next_report(0, timeout=end - time.time())
                if r is None:
                    break
                for w in r.get("sessions", []):
                    if w.get("stalled_ms"):
                        print(f"| 30 s cut: window | {a.name} | frozen | stalled {w['stalled_ms'] / 1000:.1f} s of "
                              f"{w['window_s']} s, {w.get('rtt_samples')} RTT samples |")
                for s in r.get("stability", {}).get("stalls", []):
                    stall = s
            if stall is None:
                print(f"| 30 s cut | {a.name} | {uncut_at - cut_at:.1f} s | no stall reported |")
                failures += 1
                continue
            dur = stall["duration_ms"] / 1000
            ok = abs(dur - (uncut_at - cut_at)) <= 2
            failures += not ok
            frozen = stall.get("frozen_ms")
            print(f"| 30 s cut | {a.name} | {uncut_at - cut_at:.1f} s from {cut_at:.1f} | stall from "
                  f"{stall['start_unix_ms'] / 1000:.1f}, {dur:.1f} s"
                  f"{f', display frozen {frozen / 1000:.1f} s' if frozen else ''} "
                  f"{'ok' if ok else 'MISS'} |", flush=True)

        time.sleep(iv)
        for drop in (1.5, 40):
            client.stdin.write(f"reconnect {drop}\n")
            client.stdin.flush()
            truth_ms = json.loads(client.stdout.readline())["downtime_ms"]
            connected_at = time.time()
            for a in agents:
                ev = None
                end = time.time() + 3 * iv + 70
                kinds = []
                while time.time() < end:
                    r = a.next_report(0, timeout=end - time.time())
                    if r is None:
                        break
                    for e in r.get("stability", {}).get("session_events", []):
                        kinds.append(e)
                    if any(e["kind"] == "SESSION_EVENT_KIND_RECONNECT" for e in kinds) or \
                            any(e["kind"] == "SESSION_EVENT_KIND_CONNECT" for e in kinds):
                        break
                names = ", ".join(e["kind"].replace("SESSION_EVENT_KIND_", "") for e in kinds)
                if drop < 10:
                    rec = [e for e in kinds if e["kind"] == "SESSION_EVENT_KIND_RECONNECT"]
                    ok = len(rec) == 1 and len(kinds) == 1 and \
                        abs(rec[0]["downtime_ms"] - truth_ms) <= 500
                    detail = f"{names}, downtime {rec[0]['downtime_ms'] / 1000:.2f} s" if rec else names
                else:
                    con = [e for e in kinds if e["kind"] == "SESSION_EVENT_KIND_CONNECT"]
                    found = (con[0]["at_unix_ms"] / 1000 - connected_at) if con else None
                    ok = [k["kind"] for k in kinds] == ["SESSION_EVENT_KIND_DISCONNECT",
                                                        "SESSION_EVENT_KIND_CONNECT"] and \
                        found is not None and found <= 61
                    detail = names + (f", new connection found {found:.1f} s after it opened"
                                      if found is not None else "")
                failures += not ok
                print(f"| {drop} s drop | {a.name} | downtime {truth_ms / 1000:.2f} s | {detail} "
                      f"{'ok' if ok else 'MISS'} |", flush=True)
            time.sleep(iv)
        print()
        print(f"{failures} rows missed")
        return 1 if failures else 0
    finally:
        for a in agents:
            try:
                a.stop()
            except Exception:
                pass
        for p in procs:
            p.kill()
        for ns in (NS_S, NS_C):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
