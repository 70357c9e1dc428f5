#!/bin/sh
# Inside the booted guest: wait until the boot has finished, then record what systemd and
# the agent say about it, and power off.
systemctl is-system-running --wait >/dev/null 2>&1 || true
o=/var/lib/boot-truth
mkdir -p "$o"
deskpulse-agent --once --print --config /etc/deskpulse/agent.toml > "$o/agent.json" 2> "$o/agent.err"
systemd-analyze > "$o/analyze.txt" 2>&1
systemd-analyze blame > "$o/blame.txt" 2>&1
systemd-analyze critical-chain > "$o/critical-chain.txt" 2>&1
systemd-detect-virt > "$o/virt.txt" 2>&1
# The manager's properties the agent reads, as busctl prints them ("t 123").
for p in FirmwareTimestampMonotonic LoaderTimestampMonotonic KernelTimestampMonotonic \
         InitRDTimestampMonotonic UserspaceTimestampMonotonic FinishTimestampMonotonic \
         KernelTimestamp UserspaceTimestamp Virtualization; do
  echo "$p $(busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
      org.freedesktop.systemd1.Manager "$p")"
done > "$o/manager.txt"
unit="$(busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
  org.freedesktop.systemd1.Manager GetUnit s default.target | cut -d'"' -f2)"
echo "default.target.ActiveEnterTimestampMonotonic $(busctl get-property org.freedesktop.systemd1 \
  "$unit" org.freedesktop.systemd1.Unit ActiveEnterTimestampMonotonic)" >> "$o/manager.txt"
sync
systemctl poweroff
