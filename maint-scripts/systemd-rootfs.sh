#!/usr/bin/env bash
# Makes the local image dms-test/systemd:bookworm: a debootstrapped Debian 12 (minbase) with systemd as
# PID 1, for the package test (tests/package). Cached: does nothing while an image built by this same
# recipe exists (the image carries the recipe's hash as a label). About 1-2 minutes from scratch.
#
#   bash maint-scripts/systemd-rootfs.sh [IMAGE]
#
# The mirror is the one this machine's apt uses (maint-scripts/debian-mirror.sh); no registry is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-dms-test/systemd:bookworm}
say() { printf '==> %s\n' "$*" >&2; }

recipe=$(sha256sum "$0" | cut -c1-16)
# Test runs in parallel would build it twice: the second one waits, then finds it.
exec 9>"/tmp/dms-systemd-rootfs.lock"
flock 9
have=$(docker image inspect -f '{{index .Config.Labels "dms.recipe"}}' "$image" 2>/dev/null || true)
if [[ "$have" == "$recipe" ]]; then exit 0; fi

command -v debootstrap >/dev/null \
  || { echo "systemd-rootfs: debootstrap is not installed; run maint-scripts/setup.sh first" >&2; exit 1; }
mirror=$(bash maint-scripts/debian-mirror.sh bookworm)

rootfs=$(mktemp -d -t dms-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
say "debootstrap bookworm from $mirror into $rootfs"
start=$SECONDS
# systemd-sysv: /sbin/init; dbus: systemctl talks to PID 1 through it; ca-certificates: an https mirror.
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Boot only what a container needs: no consoles, no udev, no hardware clock, nothing that acts on the host
# (the test container shares the host's network and cgroups).
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
            systemd-modules-load.service sys-kernel-debug.mount sys-kernel-tracing.mount \
            sys-kernel-config.mount sys-fs-fuse-connections.mount systemd-remount-fs.service \
            systemd-firstboot.service systemd-timesyncd.service systemd-networkd.service \
            systemd-sysctl.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
            fstrim.timer; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# A fresh machine id per container (systemd makes one at boot when the file is empty).
: >"$rootfs/etc/machine-id"
# Package installs in the test pull only what Depends names.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90dms-test"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages

say "importing as $image"
tar -C "$rootfs" -c . | docker import \
  --change "LABEL dms.recipe=$recipe" \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  - "$image" >/dev/null
say "image $image ready in $((SECONDS - start)) s"
