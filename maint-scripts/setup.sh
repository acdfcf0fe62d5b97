#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test dms, then starts what the tests need:
# apt packages, a venv (.venv) with the project and its pinned dependencies, a running Docker engine and the
# local test images. Idempotent: a second run only checks. Run as root from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every Debian package any script, test or benchmark of the project needs, installed here, once, before
# anything else runs: no other script or test installs packages on the host (two apt-gets at once race for
# its lock on a fresh machine). Grouped by who needs them.
APT_PACKAGES=(
  # the venv and the modules that build from source (fastecdsa: gcc, libgmp-dev; systemd-python)
  python3 python3-venv python3-dev gcc libgmp-dev libsystemd-dev pkg-config ca-certificates
  # the Docker engine, the local test images, network namespaces
  docker.io busybox-static iproute2
  # the .deb build (build-deb.sh; debian/control's Build-Depends) and its lint
  dpkg-dev debhelper dh-virtualenv lintian
  # the package test's systemd rootfs (systemd-rootfs.sh)
  debootstrap
  # jobs' bounded /workspace: losetup (util-linux), mkfs.ext4, debugfs, dumpe2fs (e2fsprogs)
  util-linux e2fsprogs
  # the dashboard's browser tests (Selenium drives Debian's browser through its own driver; never a download)
  chromium chromium-driver
)

say() { printf '==> %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# anvil for the payment tests and the demo comes from npm: Debian's, unless the machine has its own Node.js
# (Debian's npm conflicts with a nodejs from elsewhere).
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv uses Debian's python3, the interpreter the .deb is built on.
stamp=.venv/.dms-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  /usr/bin/python3 -m venv .venv
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  say "installing dms and its pinned dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -U pip wheel
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
  echo "$want" > "$stamp"
fi

# anvil (a local Ethereum node) comes from npm; the payment tests and the demo use it.
.venv/bin/python -m tests.payments.anvil >/dev/null

# the dashboard's libraries from npm, vendored into dms/web/vendor/
bash maint-scripts/build-web.sh

bash maint-scripts/start-docker.sh
bash maint-scripts/build-test-images.sh
say "set-up complete"
