#!/usr/bin/env bash
# Vendors the dashboard's browser libraries into the package: `npm ci` in web/ (versions pinned by
# web/package-lock.json), then copies the ES modules, the CSS and their licences into dms/web/vendor/,
# which git ignores and the wheel and the .deb carry (pyproject.toml's package-data). The page loads them
# from the daemon itself: never from a CDN, so it works offline.
#
#   bash maint-scripts/build-web.sh      (setup.sh and build-deb.sh run it; it does nothing when up to date)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }
command -v npm >/dev/null || { echo "build-web: npm is not installed; run maint-scripts/setup.sh first" >&2; exit 1; }

vendor=dms/web/vendor
stamp=$vendor/.built-from
want=$( (cat web/package-lock.json; cat "$0") | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
  exit 0
fi

say "vendoring the dashboard's libraries (npm ci in web/)"
npm ci --prefix web --no-audit --no-fund --loglevel=error >&2
nm=web/node_modules
rm -rf "$vendor"
mkdir -p "$vendor"
# name in vendor/        <- file in node_modules/
files=(
  "preact.module.js       preact/dist/preact.module.js"
  "hooks.module.js        preact/hooks/dist/hooks.module.js"
  "htm.module.js          htm/dist/htm.module.js"
  "uPlot.esm.js           uplot/dist/uPlot.esm.js"
  "uPlot.min.css          uplot/dist/uPlot.min.css"
  "LICENSE.preact         preact/LICENSE"
  "LICENSE.htm            htm/LICENSE"
  "LICENSE.uplot          uplot/LICENSE"
)
for entry in "${files[@]}"; do
  read -r name from <<<"$entry"
  [[ -f "$nm/$from" ]] || { echo "build-web: $nm/$from is missing (did a package change its layout?)" >&2; exit 1; }
  cp "$nm/$from" "$vendor/$name"
  # the one bare import (hooks -> preact) made relative, so the page needs no import map
  sed -i 's#from"preact"#from"./preact.module.js"#g' "$vendor/$name"
done
echo "$want" > "$stamp"
say "dashboard libraries in $vendor"
