#!/usr/bin/env bash
# build.sh - build the guest test binary from this repository and pack the
# VM's initramfs: static busybox, ipvsadm and iproute2's ip (with the shared
# libraries ldd names), the IPVS and network kernel modules in dependency
# order, /init, and guest.test (`go test -c -tags vmguest`, static).
#
# Output: $CACHE/initramfs.cpio.gz. Run setup.sh first.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${RAFTLB_VM_CACHE:-/var/cache/raftlb-vm}
export PATH="$PATH:/usr/local/go/bin"
if [ ! -f "$CACHE/vm.env" ]; then
  echo "build: $CACHE/vm.env is missing: run integration/vm/setup.sh first" >&2
  exit 1
fi
. "$CACHE/vm.env"

# Loaded at boot, in this order after their dependencies. Schedulers the
# kernel lacks (ip_vs_twos before Linux 6.2) are skipped with a note.
MODULES="nf_tables ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh
  ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf ip_vs_twos veth bridge"

ROOT="$CACHE/initramfs-root"
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,lib64,lib/x86_64-linux-gnu,proc,sys,dev,run,tmp,etc,root,var/run/netns,etc/iproute2}

# --- the test binary first: a compile error should fail fast
go -C "$REPO" vet -tags vmguest ./integration/vm/guest/
CGO_ENABLED=0 go -C "$REPO" test -c -tags vmguest -trimpath -o "$ROOT/bin/guest.test" ./integration/vm/guest/
# the real agent and CLI, for the guest test that drives them
CGO_ENABLED=0 go -C "$REPO" build -trimpath -o "$ROOT/bin/raftlb" ./cmd/raftlb

# --- busybox and its applets
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in $("$BUSYBOX" --list); do
  [ -e "$ROOT/bin/$a" ] || ln -s busybox "$ROOT/bin/$a"
done
ln -sf ../bin/busybox "$ROOT/sbin/modprobe" # the kernel's request_module() runs /sbin/modprobe

# --- dynamically linked tools with their libraries
copy_with_libs() {
  local bin=$1
  cp -L "$bin" "$ROOT/usr/sbin/"
  ldd "$bin" | awk '/=> \//{print $3} /^\t\/lib64\//{print $1}' | while read -r lib; do
    case "$lib" in
      /lib64/*) cp -L "$lib" "$ROOT/lib64/" ;;
      *) cp -L "$lib" "$ROOT/lib/x86_64-linux-gnu/" ;;
    esac
  done
}
copy_with_libs /usr/sbin/ipvsadm
copy_with_libs /usr/sbin/ip
rm -f "$ROOT/bin/ip" # busybox's ip has no netns and no veth
# ipvsadm-save/-restore are small bash scripts; the guest runs them with sh.
cp /usr/sbin/ipvsadm-save /usr/sbin/ipvsadm-restore "$ROOT/usr/sbin/"
echo "root:x:0:0:root:/root:/bin/sh" > "$ROOT/etc/passwd"
echo "root:x:0:" > "$ROOT/etc/group"

# --- kernel modules, dependencies first (modprobe --show-depends on the host)
MODDIR="$KROOT/lib/modules/$KV"
: > "$ROOT/etc/modules.load"
for m in $MODULES; do
  if ! deps=$(modprobe -d "$KROOT" -S "$KV" --show-depends "$m" 2>/dev/null); then
    echo "build: kernel $KV has no module $m; skipped" >&2
    continue
  fi
  echo "$deps" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  rel=${ko#"$MODDIR"/}
  mkdir -p "$ROOT/lib/modules/$KV/$(dirname "$rel")"
  cp "$ko" "$ROOT/lib/modules/$KV/$rel"
  echo "/lib/modules/$KV/$rel" >> "$ROOT/etc/modules.load"
done
cp "$MODDIR"/modules.order "$MODDIR"/modules.builtin "$MODDIR"/modules.builtin.modinfo "$ROOT/lib/modules/$KV/"
depmod -b "$ROOT" "$KV"

install -m 0755 "$HERE/guest/init" "$ROOT/init"

(cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > "$CACHE/initramfs.cpio.gz.tmp")
mv "$CACHE/initramfs.cpio.gz.tmp" "$CACHE/initramfs.cpio.gz"
echo "build: $(wc -l < "$ROOT/etc/modules.load") modules, initramfs $(du -h "$CACHE/initramfs.cpio.gz" | cut -f1)"
