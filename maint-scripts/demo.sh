#!/usr/bin/env bash
# The main job, end to end on one host: two side-by-side nunet-dms instances, one from dms_config.json and
# one from dms_config.second.json, both onboarded through the `nunet` CLI, their capacity printed.
# State goes to .demo/ (not ~/.nunet): DMS_GENERAL__DATA_DIR overrides the configs' data_dir.
set -euo pipefail
cd "$(dirname "$0")/.."
bash maint-scripts/setup.sh

DEMO=.demo
rm -rf "$DEMO"
mkdir -p "$DEMO"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
nunet() { .venv/bin/nunet "$@"; }

start() {  # NAME CONFIG
  DMS_GENERAL__DATA_DIR="$PWD/$DEMO/$1" .venv/bin/nunet-dms --config "$2" >"$DEMO/$1.log" 2>&1 &
  pids+=($!)
}
wait_ready() {  # NAME URL
  for _ in $(seq 1 100); do
    if .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
         "$2/api/v1/onboarding/status" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "instance $1 did not start; its log:" >&2; cat "$DEMO/$1.log" >&2; exit 1
}

A=http://127.0.0.1:9999
B=http://127.0.0.1:9998
step "starting instance A (dms_config.json, REST $A) and B (dms_config.second.json, REST $B)"
start a dms_config.json
start b dms_config.second.json
wait_ready a "$A"
wait_ready b "$B"
echo "both ready; logs in $DEMO/a.log and $DEMO/b.log"

step "A: what the machine has"
nunet --dms "$A" capacity --full

# Reserve half of the machine's CPU and memory on A, a third on B (each within the 10-90 % rule).
read -r CPU MEM < <(.venv/bin/python -c "
import json, urllib.request
m = json.load(urllib.request.urlopen('$A/api/v1/onboarding/provisioned'))
print(m['cpu'], m['memory'])")

step "A: a payout wallet"
ADDR=$(nunet --dms "$A" wallet new | tee /dev/stderr | grep -oE '0x[0-9a-fA-F]{40}' | head -n1)

step "A: onboarding ($((CPU / 2)) MHz, $((MEM / 2)) MB, channel nunet-test)"
nunet --dms "$A" onboard -m $((MEM / 2)) -c $((CPU / 2)) -n nunet-test -a "$ADDR" -x 1000000
step "B: onboarding ($((CPU / 3)) MHz, $((MEM / 3)) MB, channel nunet-test)"
nunet --dms "$B" onboard -m $((MEM / 3)) -c $((CPU / 3)) -n nunet-test -a "$ADDR" -x 2000000

step "A: nunet info"
nunet --dms "$A" info
step "B: nunet info"
nunet --dms "$B" info
step "A and B: capacity"
nunet --dms "$A" capacity
nunet --dms "$B" capacity

step "done: stopping both instances"
