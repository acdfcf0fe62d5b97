#!/usr/bin/env bash
# NuNet's dev-setup: build the nunet-dms .deb from this checkout, install it (the nunet user, the unit, the
# config, the CLI), then stop and disable the service, so the daemon can be run from source without the
# packaged one holding its port:
#
#   bash maint-scripts/dev-setup.sh
#   .venv/bin/nunet-dms --config dms_config.json
#
# `systemctl enable --now nunet-dms` brings the packaged service back. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '==> %s\n' "$*" >&2; }

deb=$(bash maint-scripts/build-deb.sh)
say "installing $deb"
apt-get update -qq
# apt resolves the Depends (python3, docker.io or docker-ce, ...) from the configured mirror.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb" >&2

if [[ -d /run/systemd/system ]]; then
  say "stopping and disabling nunet-dms.service"
  systemctl disable --now nunet-dms.service
else
  # Without systemd as PID 1 (a container, a chroot) nothing was started; only the enablement is undone.
  say "systemd is not running: disabling nunet-dms.service for later boots"
  systemctl disable nunet-dms.service
fi
say "installed $(dpkg-query -W -f='${Package} ${Version}' nunet-dms); the service is stopped and disabled"
