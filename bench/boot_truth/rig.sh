#!/usr/bin/env bash
# Boot truth rig: boot real systemd with the agent installed, and print the agent's boot
# record next to systemd-analyze (time, blame, critical-chain) from inside the same boot.
#   - systemd-nspawn -b on a debootstrap root (userspace phases, about 3 s);
#   - qemu-system-x86_64 without KVM on the installed kernel, the same root as an ext4 disk,
#     with the installed initrd (kernel and userspace phases) and with a dracut initrd running
#     systemd (kernel, initrd and userspace phases), about 20 s each.
# Each boot leaves the manager's D-Bus timestamps, systemd-analyze's output and the agent's
# `--once --print` report in OUT/<boot>/; --fixture DIR copies them there as test fixtures
# (tests/data/boot/systemd-*). Needs root. Not part of CI: it downloads and boots.
# Usage: bench/boot_truth/rig.sh AGENT_BINARY [OUT_DIR] [--fixture DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
  -h|--help) echo "usage: bench/boot_truth/rig.sh AGENT_BINARY [OUT_DIR] [--fixture DIR] (root)"; exit 0 ;;
  --version) bash "$here/../../scripts/version.sh" rig.sh; exit 0 ;;
esac
agent="$(realpath "${1:?usage: rig.sh AGENT_BINARY [OUT_DIR] [--fixture DIR]}")"
out="${2:-$(mktemp -d /tmp/boot-truth-XXXXXX)}"
fixture=""
if [ "${3:-}" = "--fixture" ]; then fixture="$(realpath "${4:?--fixture DIR}")"; fi
cache=/var/tmp/deskpulse-boot-truth
mkdir -p "$out" "$cache"

if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null ||
   ! command -v qemu-system-x86_64 >/dev/null || ! command -v debugfs >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    debootstrap systemd-container qemu-system-x86 e2fsprogs >&2
fi

rootfs="$cache/rootfs"
if [ ! -x "$rootfs/lib/systemd/systemd" ]; then
  rm -rf "$rootfs.tmp"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,udev,kmod \
    bookworm "$rootfs.tmp" http://deb.debian.org/debian >&2
  mv "$rootfs.tmp" "$rootfs"
fi

# The guest: the agent, its configuration, and a service that runs once boot has finished.
install -D -m 0755 "$agent" "$rootfs/usr/local/bin/deskpulse-agent"
install -D -m 0755 "$here/guest-report.sh" "$rootfs/usr/local/bin/boot-truth-report"
mkdir -p "$rootfs/etc/deskpulse" "$rootfs/etc/systemd/system/multi-user.target.wants"
cat > "$rootfs/etc/deskpulse/agent.toml" <<'TOML'
[agent]
state_dir = "/var/lib/deskpulse"
role = "thin_client"
[probes.session]
enabled = false
[probes.peripherals]
enabled = false
[probes.stability]
enabled = false
TOML
cat > "$rootfs/etc/systemd/system/boot-truth.service" <<'UNIT'
[Unit]
Description=Boot truth: the agent's boot record next to systemd-analyze
After=multi-user.target
[Service]
Type=simple
ExecStart=/usr/local/bin/boot-truth-report
UNIT
ln -sf ../boot-truth.service "$rootfs/etc/systemd/system/multi-user.target.wants/boot-truth.service"
echo "deskpulse-boot" > "$rootfs/etc/hostname"
: > "$rootfs/etc/machine-id"  # a fresh identity each boot, as a first boot has
rm -rf "$rootfs/var/lib/boot-truth" "$rootfs/var/lib/deskpulse"

# 1. systemd-nspawn: real systemd as the container's PID 1.
echo "== systemd-nspawn -b" >&2
start=$SECONDS
timeout 180 systemd-nspawn --quiet --register=no --keep-unit -D "$rootfs" -b \
  > "$out/nspawn-console.txt" 2>&1 || true
mkdir -p "$out/nspawn"
cp -a "$rootfs/var/lib/boot-truth/." "$out/nspawn/" 2>/dev/null || true
echo "nspawn boot and report: $((SECONDS - start)) s" >&2

# 2. qemu without KVM: the installed kernel, the same root on a virtio disk; once with the
# installed initrd (initramfs-tools: its time counts as kernel time) and once with a dracut
# initrd, where systemd runs in the initrd (its own phase).
kver="$(ls /boot/vmlinuz-* | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)"
mkdir -p "$rootfs/lib/modules"
[ -d "$rootfs/lib/modules/$kver" ] || cp -a "/lib/modules/$kver" "$rootfs/lib/modules/"
if [ ! -f "$cache/initrd-dracut-$kver.img" ]; then
  [ -x "$rootfs/usr/bin/dracut" ] ||
    systemd-nspawn --quiet --register=no --keep-unit -D "$rootfs" \
      sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dracut' >&2
  systemd-nspawn --quiet --register=no --keep-unit -D "$rootfs" dracut --force --no-hostonly \
    --add-drivers "virtio_blk virtio_pci ext4" --kver "$kver" "/boot/initrd-dracut.img" >&2
  mv "$rootfs/boot/initrd-dracut.img" "$cache/initrd-dracut-$kver.img"
fi
qemu_boot() {  # NAME INITRD
  rm -rf "$rootfs/var/lib/boot-truth" "$rootfs/var/lib/deskpulse"
  : > "$rootfs/etc/machine-id"
  local img="$cache/root.img"
  rm -f "$img"
  mke2fs -q -t ext4 -d "$rootfs" -L root "$img" 3G
  echo "== qemu-system-x86_64 (TCG), kernel $kver, $2" >&2
  local start=$SECONDS
  timeout 900 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 1536 -smp 2 \
    -kernel "/boot/vmlinuz-$kver" -initrd "$2" \
    -append "root=/dev/vda rw console=ttyS0 systemd.show_status=0" \
    -drive "file=$img,format=raw,if=virtio" -nic none \
    -display none -monitor none -serial "file:$out/$1-console.txt" -no-reboot >&2 || true
  echo "$1 boot and report: $((SECONDS - start)) s" >&2
  mkdir -p "$out/$1"
  for f in agent.json agent.err analyze.txt blame.txt critical-chain.txt manager.txt virt.txt; do
    debugfs -R "dump /var/lib/boot-truth/$f $out/$1/$f" "$img" 2>/dev/null || true
  done
}
qemu_boot qemu "/boot/initrd.img-$kver"
qemu_boot qemu-dracut "$cache/initrd-dracut-$kver.img"

# Each boot as the agent recorded it, next to what systemd-analyze said inside it.
for b in nspawn qemu qemu-dracut; do
  echo "== $b: the agent's boot record"
  python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])).get("boot"), indent=1))' \
    "$out/$b/agent.json" 2>&1 || true
  echo "== $b: systemd-analyze; blame (slowest 8); critical-chain"
  cat "$out/$b/analyze.txt" 2>/dev/null || true
  head -8 "$out/$b/blame.txt" 2>/dev/null || true
  grep -v '^The time' "$out/$b/critical-chain.txt" 2>/dev/null || true
  echo
done
status=0
python3 "$here/compare.py" "$out/nspawn" "$out/qemu" "$out/qemu-dracut" || status=$?
if [ -n "$fixture" ]; then
  for b in nspawn qemu qemu-dracut; do
    mkdir -p "$fixture/systemd-$b"
    cp "$out/$b/manager.txt" "$out/$b/analyze.txt" "$out/$b/blame.txt" \
      "$out/$b/critical-chain.txt" "$out/$b/agent.json" "$out/$b/virt.txt" "$fixture/systemd-$b/"
  done
  echo "fixtures in $fixture/systemd-{nspawn,qemu,qemu-dracut}" >&2
fi
exit "$status"
