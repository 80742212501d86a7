#!/usr/bin/env bash
# record-bench.sh CONSOLE_LOG DOC - copy the benchmark table the guest
# printed (between BENCH-MD-BEGIN and BENCH-MD-END) into DOC between
# <!-- bench:ipvs:begin --> and <!-- bench:ipvs:end -->, with the date, the
# machine and the command. The section is appended if DOC lacks the markers.
# Called by run.sh with BENCH=1 RECORD=DOC; the numbers are never typed.
set -euo pipefail

LOG=$1
DOC=$2
CACHE=${RAFTLB_VM_CACHE:-/var/cache/raftlb-vm}
. "$CACHE/vm.env"

table=$(tr -d '\r' <"$LOG" | sed -n '/^BENCH-MD-BEGIN$/,/^BENCH-MD-END$/p' | sed '1d;$d')
if [ -z "$table" ]; then
  echo "record-bench: no BENCH-MD-BEGIN..END block in $LOG" >&2
  exit 1
fi
cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
accel="KVM"
if [ "${ACCEL_USED:-TCG}" = TCG ]; then
  accel="TCG (software emulation: expect bare metal to be several times faster)"
fi
block=$(mktemp)
trap 'rm -f "$block"' EXIT
{
  echo "<!-- bench:ipvs:begin -->"
  echo "Measured $(date -u -r "$LOG" '+%Y-%m-%d %H:%M') UTC on $cpu, $(nproc) cores (host), in a QEMU $QEMU_VERSION guest with $accel, kernel package $KPKG $KPKG_VERSION, ipvsadm $IPVSADM_VERSION."
  echo
  echo 'Command: `BENCH=1 RECORD=docs/benchmarks.md ./integration/vm/run.sh`'
  echo
  echo "$table"
  echo "<!-- bench:ipvs:end -->"
} >"$block"

if grep -q '<!-- bench:ipvs:begin -->' "$DOC"; then
  awk -v blk="$block" '
    /<!-- bench:ipvs:begin -->/ { while ((getline l < blk) > 0) print l; skip = 1; next }
    /<!-- bench:ipvs:end -->/ { skip = 0; next }
    !skip { print }
  ' "$DOC" >"$DOC.tmp"
  mv "$DOC.tmp" "$DOC"
else
  {
    echo
    echo "## IPVS backend: programming real IPVS (in a VM)"
    echo
    cat "$block"
    echo
    echo "Notes:"
    echo "- \"Backend: program from empty\" is one Apply of every add-service and"
    echo "  add-dest change, one netlink request each (moby/ipvs). ipvsadm-restore"
    echo "  is Debian's script: ipvsadm -C, then ipvsadm -R reading the same rules."
    echo "- \"One more destination\" is the steady state: the reconciler diffs the"
    echo "  desired table against its cache and makes one kernel operation, without"
    echo "  reading the kernel; a restore-based tool flushes and reloads everything."
    echo "- A full pass (start-up and each periodic resync) is one Dump plus a diff."
    echo "- TCG emulates every guest instruction, so absolute times are pessimistic;"
    echo "  the ratios are the point."
  } >>"$DOC"
fi
echo "record-bench: wrote the IPVS benchmark into $DOC"
