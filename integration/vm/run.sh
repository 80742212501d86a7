#!/usr/bin/env bash
# run.sh - the IPVS integration tests: set up the host (once, cached), build
# the guest test binary and initramfs, boot a throw-away QEMU VM with a
# Debian kernel that has IPVS, stream its console and exit 0 only if every
# guest test passed (the guest prints GUEST-RESULT rc=N).
#
#   ./integration/vm/run.sh                 all guest tests
#   ./integration/vm/run.sh 'TestNAT|TestSync'   only these (go test -run)
#   BENCH=1 ./integration/vm/run.sh         the benchmark instead
#   BENCH=1 RECORD=docs/benchmarks.md ./integration/vm/run.sh
#                                           ... and write its table there
#
# Env: RAFTLB_VM_CACHE (default /var/cache/raftlb-vm), VM_TIMEOUT seconds
# before the VM is killed (default 300; 2400 with BENCH=1), VM_MEM MiB
# (default 512; 2048 with BENCH=1), VM_SMP (default 2), ACCEL kvm|tcg|auto,
# INTERACTIVE=1 for a shell on the guest console after the tests.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${RAFTLB_VM_CACHE:-/var/cache/raftlb-vm}
RUN=${1:-}
BENCH=${BENCH:-0}
if [ "$BENCH" = 1 ]; then
  RUN=${RUN:-'^TestBenchmark$'}
  VM_TIMEOUT=${VM_TIMEOUT:-2400}
  VM_MEM=${VM_MEM:-2048}
fi
VM_TIMEOUT=${VM_TIMEOUT:-300}
VM_MEM=${VM_MEM:-512}
VM_SMP=${VM_SMP:-2}
ACCEL=${ACCEL:-auto}

if [ "$(id -u)" -ne 0 ]; then
  echo "vm: must run as root (apt-get install, and QEMU)" >&2
  exit 1
fi
# One run at a time per cache: the build and the console log are shared.
mkdir -p "$CACHE"
exec 9>"$CACHE/run.lock"
if ! flock -n 9; then
  echo "vm: another run.sh holds $CACHE/run.lock; waiting for it"
  flock -w 1800 9
fi
t0=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

"$HERE/setup.sh"
"$HERE/build.sh"
. "$CACHE/vm.env"
t_built=$(secs "$t0")

# KVM only with real hardware virtualisation: a /dev/kvm backed by a
# paravirtual kvm_pvm (no vmx/svm in cpuinfo) cannot run a stock kernel.
if [ "$ACCEL" = auto ]; then
  ACCEL=tcg
  if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; fi
fi
if [ "$ACCEL" = kvm ]; then accel=(-accel kvm -cpu host); else accel=(-accel tcg -cpu max); fi

# The guest's go test timeout ends just before the VM's, so a hang shows
# as a goroutine dump rather than a killed VM.
append="console=ttyS0 edd=off panic=-1 loglevel=4 raftlb.timeout=$((VM_TIMEOUT - 20))s"
[ -n "$RUN" ] && append+=" raftlb.run=$RUN"
[ "$BENCH" = 1 ] && append+=" raftlb.bench=1"
qemu=(qemu-system-x86_64 "${accel[@]}" -M pc -smp "$VM_SMP" -m "$VM_MEM"
  -nodefaults -no-user-config -nographic -no-reboot -serial stdio -monitor none -nic none
  -kernel "$VMLINUZ" -initrd "$CACHE/initramfs.cpio.gz")

if [ "${INTERACTIVE:-0}" = 1 ]; then
  exec "${qemu[@]}" -append "$append raftlb.shell=1"
fi

LOG="$CACHE/console.log"
echo "vm: booting $KPKG ($ACCEL, ${VM_SMP} vCPUs, ${VM_MEM} MiB, at most ${VM_TIMEOUT}s); console in $LOG"
t_boot=$(date +%s.%N)
timeout -k 5 "$VM_TIMEOUT" "${qemu[@]}" -append "$append" </dev/null >"$LOG" 2>&1 &
qpid=$!
# Whatever happens to this script, the VM goes with it.
trap 'kill "$qpid" 2>/dev/null || true' EXIT INT TERM
tail -n +1 --pid="$qpid" -f "$LOG" | sed -u 's/\r//g'
qrc=0
wait "$qpid" || qrc=$?
trap - EXIT INT TERM

rc=$(tr -d '\r' <"$LOG" | sed -n 's/^GUEST-RESULT rc=\([0-9]*\).*/\1/p' | tail -1)
echo "vm: qemu rc=$qrc guest rc=${rc:-none}; setup+build ${t_built}s, VM $(secs "$t_boot")s, total $(secs "$t0")s"
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  echo "vm: the VM did not finish within ${VM_TIMEOUT}s and was killed (raise VM_TIMEOUT?)" >&2
fi
if [ "${rc:-1}" != 0 ] || [ "$qrc" != 0 ]; then
  exit 1
fi

if [ "$BENCH" = 1 ] && [ -n "${RECORD:-}" ]; then
  ACCEL_USED=${ACCEL^^} "$HERE/record-bench.sh" "$LOG" "$REPO/$RECORD"
fi
