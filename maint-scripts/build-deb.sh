#!/usr/bin/env bash
# Builds the nunet-dms .deb (debian/, dh-virtualenv) from a clean copy of this checkout and prints its path
# as the last line of stdout; everything else goes to stderr.
#
#   bash maint-scripts/build-deb.sh [--out DIR] [--lintian]
#
# --out DIR   where the .deb lands (default: dist/, which git ignores)
# --lintian   also run lintian on it; fails on any error or warning not overridden in debian/
#
# Its build dependencies (debian/control's Build-Depends, and lintian) come from maint-scripts/setup.sh.
# The copy holds the tracked files plus untracked ones git does not ignore, so .venv, caches and earlier
# build trees never reach the package, and the working tree stays untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

out=dist
run_lintian=0
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --lintian) run_lintian=1; shift ;;
    *) echo "usage: $0 [--out DIR] [--lintian]" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }

# Build dependencies (debian/control's Build-Depends, and lintian) come from maint-scripts/setup.sh: no
# script but that one installs packages, so two never race for apt's lock.
need_setup() { echo "$1; run maint-scripts/setup.sh first (it installs every package the build needs)" >&2; exit 1; }
for tool in dpkg-checkbuilddeps dpkg-buildpackage dh_virtualenv lintian; do
  command -v "$tool" >/dev/null || need_setup "build-deb: $tool is not installed"
done
if ! unmet=$(dpkg-checkbuilddeps 2>&1); then
  need_setup "build-deb: ${unmet#dpkg-checkbuilddeps: error: }"
fi

work=$(mktemp -d -t nunet-dms-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/nunet-dms
mkdir -p "$src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked and untracked-but-not-ignored files that exist (a deleted tracked file is skipped).
  git -C "$root" ls-files -z -co --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -c | tar -x -C "$src"
else
  tar -c --exclude-vcs --exclude=.venv --exclude=dist --exclude=build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache --exclude=node_modules \
    --exclude=./.demo . | tar -x -C "$src"
fi

# The dashboard's libraries (git-ignored, generated from web/package-lock.json) go into the copy's package.
bash "$src/maint-scripts/build-web.sh"

version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
say "building nunet-dms $version in $src"
start=$SECONDS
# -b: binary only (no source package to sign or upload). -us -uc: unsigned.
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
  tail -n 60 "$work/build.log" >&2
  echo "dpkg-buildpackage failed; the lines above end its log" >&2
  exit 1
}
say "built in $((SECONDS - start)) s"

mkdir -p "$out"
deb=$(find "$work" -maxdepth 1 -name "nunet-dms_${version}_*.deb" -print -quit)
[[ -n "$deb" ]] || { echo "no .deb produced in $work" >&2; exit 1; }
cp "$deb" "$out/"
deb=$(cd "$out" && pwd)/$(basename "$deb")

if ((run_lintian)); then
  say "lintian $deb"
  lintian --fail-on error,warning --info --tag-display-limit 0 "$deb" >&2
fi
echo "$deb"
