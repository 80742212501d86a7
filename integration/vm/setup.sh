#!/usr/bin/env bash
# setup.sh - everything the IPVS test VM needs on the host, idempotent and
# cached: QEMU and the tools copied into the guest (ipvsadm, iproute2, cpio,
# kmod) are apt-installed; the Debian cloud kernel and busybox-static are only
# downloaded and unpacked into $CACHE, never installed on the host.
#
# Writes $CACHE/vm.env, which build.sh and run.sh read.
#
# Env: RAFTLB_VM_CACHE  cache directory (default /var/cache/raftlb-vm)
#      KFLAVOR          Debian kernel flavour (default cloud-amd64)
set -euo pipefail

CACHE=${RAFTLB_VM_CACHE:-/var/cache/raftlb-vm}
KFLAVOR=${KFLAVOR:-cloud-amd64}
export DEBIAN_FRONTEND=noninteractive
# Other jobs on the machine may be running apt: wait for the lock, not fail.
APT=(apt-get -o DPkg::Lock::Timeout=600)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (apt-get install, and the VM's tools)" >&2
  exit 1
fi
mkdir -p "$CACHE/debs"

# Host packages. busybox-static is deliberately not among them: it conflicts
# with the busybox package that other tools may need, so it is unpacked below.
pkgs=(qemu-system-x86 ipvsadm iproute2 cpio kmod gzip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
have_lists() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }
if [ ${#missing[@]} -gt 0 ] || ! have_lists; then
  "${APT[@]}" update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# download_deb PKG: the .deb of PKG in $CACHE/debs (downloaded once).
download_deb() {
  local pkg=$1 deb
  deb=$(compgen -G "$CACHE/debs/${pkg}_*.deb" | head -1 || true)
  if [ -z "$deb" ]; then
    (cd "$CACHE/debs" && "${APT[@]}" -o APT::Sandbox::User=root download -qq "$pkg" >/dev/null)
    deb=$(compgen -G "$CACHE/debs/${pkg}_*.deb" | head -1)
  fi
  echo "$deb"
}

# The concrete kernel behind the meta package, e.g.
# linux-image-cloud-amd64 -> linux-image-6.1.0-37-cloud-amd64.
KPKG=$(apt-cache depends "linux-image-$KFLAVOR" | awk '/Depends: linux-image-/{print $2; exit}')
if [ -z "$KPKG" ]; then
  echo "setup: cannot resolve linux-image-$KFLAVOR to a kernel package (apt-get update?)" >&2
  exit 1
fi
KV=${KPKG#linux-image-}
kdeb=$(download_deb "$KPKG")
KROOT="$CACHE/kernel-$KV"
if [ ! -f "$KROOT/lib/modules/$KV/modules.dep" ]; then
  rm -rf "$KROOT"
  mkdir -p "$KROOT"
  dpkg-deb -x "$kdeb" "$KROOT"
  # The package's postinst would run depmod; we never install it, so do it here.
  depmod -b "$KROOT" "$KV"
fi

BB="$CACHE/busybox-static/bin/busybox"
if [ ! -x "$BB" ]; then
  bdeb=$(download_deb busybox-static)
  rm -rf "$CACHE/busybox-static"
  mkdir -p "$CACHE/busybox-static"
  dpkg-deb -x "$bdeb" "$CACHE/busybox-static"
fi

cat > "$CACHE/vm.env.tmp" <<EOF
KV=$KV
KPKG=$KPKG
KPKG_VERSION=$(dpkg-deb -f "$kdeb" Version)
KROOT=$KROOT
VMLINUZ=$KROOT/boot/vmlinuz-$KV
BUSYBOX=$BB
QEMU_VERSION=$(dpkg-query -W -f='${Version}' qemu-system-x86)
IPVSADM_VERSION=$(dpkg-query -W -f='${Version}' ipvsadm)
EOF
mv "$CACHE/vm.env.tmp" "$CACHE/vm.env"
echo "setup: kernel $KPKG in $KROOT; cache $CACHE"
