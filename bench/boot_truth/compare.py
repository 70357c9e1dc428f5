#!/usr/bin/env python3
"""Prints the agent's boot record next to systemd-analyze's, per boot folder, and checks
that every phase systemd-analyze reports equals the agent's to the millisecond it prints
(kernel and initrd within 1%). Exit status 1 when one does not."""
import json
import re
import sys

UNITS = {"h": 3_600_000, "min": 60_000, "s": 1000, "ms": 1, "us": 0.001, "µs": 0.001}


def span_ms(text):
    """systemd's format_timespan ("1min 5.947s", "567ms") in ms."""
    return sum(float(n) * UNITS[u] for n, u in re.findall(r"([\d.]+)(h|min|ms|us|µs|s)\b", text))


def analyze_phases(text):
    m = re.search(r"Startup finished in ([^=\n]*)(?:= ([^\n]*))?", text)
    if not m:
        return None, None
    phases = {name: span_ms(value) for value, name in re.findall(r"([^+]+?) \((\w+)\)", m.group(1))}
    total = span_ms(m.group(2)) if m.group(2) else sum(phases.values())
    return phases, total


def main():
    failures = 0
    print("| boot | phase | systemd-analyze | agent | |")
    print("|---|---|---|---|---|")
    for folder in sys.argv[1:]:
        name = folder.rstrip("/").split("/")[-1]
        try:
            analyze = open(f"{folder}/analyze.txt").read()
            report = json.load(open(f"{folder}/agent.json"))
        except (OSError, ValueError) as e:
            print(f"| {name} | - | no result: {e} | | MISS |")
            failures += 1
            continue
        phases, total = analyze_phases(analyze)
        boot = report.get("boot", {})
        if phases is None or not boot:
            print(f"| {name} | - | {analyze.strip()[:80]} | {json.dumps(boot)[:80]} | MISS |")
            failures += 1
            continue
        agent_total = boot.get("total_ms")
        rows = [(p, v, boot.get(f"{p}_ms")) for p, v in phases.items()]
        rows.append(("total", total, agent_total))
        for phase, theirs, ours in rows:
            if ours is None:
                ok = False
            elif phase in ("kernel", "initrd"):
                ok = abs(ours - theirs) <= 0.01 * theirs
            else:
                ok = abs(ours - theirs) < 1  # to the millisecond systemd-analyze prints
            failures += not ok
            print(f"| {name} | {phase} | {theirs:.0f} ms | "
                  f"{'absent' if ours is None else f'{ours} ms'} | {'ok' if ok else 'MISS'} |")
        extra = sorted(set(k[:-3] for k in boot if k.endswith("_ms")) -
                       set(phases) - {"login_ready", "desktop_ready", "total", "booted_at_unix"})
        for p in extra:
            print(f"| {name} | {p} | not reported | {boot[p + '_ms']} ms | MISS |")
            failures += 1
        m = re.search(r"reached after (.*?) in userspace", analyze)
        if "login_ready_ms" in boot and m:
            before = sum(boot.get(f"{p}_ms", 0) for p in ("firmware", "loader", "kernel", "initrd"))
            ours = boot["login_ready_ms"] - before
            theirs = span_ms(m.group(1))
            ok = abs(ours - theirs) <= 1  # both truncated, from different origins
            failures += not ok
            print(f"| {name} | default.target in userspace | {theirs:.0f} ms | {ours} ms | "
                  f"{'ok' if ok else 'MISS'} |")
    print()
    print(f"{failures} rows missed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
