#!/usr/bin/env bash
# Builds the local images tests and the demo run (no registry is reachable): dms-test/busybox:1,
# a static busybox with a link per applet, imported from a tar stream in about a second.
set -euo pipefail
IMAGE=dms-test/busybox:1
if docker image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
echo "==> building $IMAGE" >&2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$root/etc/passwd"
tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
