#!/usr/bin/env bash
# The main job, end to end on one host: two side-by-side nunet-dms instances, A from dms_config.json and
# B from dms_config.second.json, both onboarded; they find each other over libp2p, and B (the service
# provider) dispatches a busybox job to A (the compute provider), printing every websocket frame.
# State goes to .demo/ (not ~/.nunet): DMS_GENERAL__DATA_DIR overrides the configs' data_dir.
set -euo pipefail
cd "$(dirname "$0")/.."
bash maint-scripts/setup.sh
began=$SECONDS

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
probe() { .venv/bin/python maint-scripts/probe.py "$@"; }
wait_ready() {  # NAME URL
  probe wait "$2/api/v1/onboarding/status" onboarded --timeout 30 --what "instance $1 serves its API" \
    || { echo "instance $1 did not start; its log:" >&2; cat "$DEMO/$1.log" >&2; exit 1; }
}

A=http://127.0.0.1:9999
B=http://127.0.0.1:9998
RPC=http://127.0.0.1:8545

step "starting a local chain (anvil, $RPC) and deploying the escrow contract"
ANVIL=$(.venv/bin/python -m tests.payments.anvil)
"$ANVIL" --host 127.0.0.1 --port 8545 --chain-id 31337 >"$DEMO/anvil.log" 2>&1 &
pids+=($!)
probe balance "$RPC" 0x0000000000000000000000000000000000000000 >/dev/null
ESCROW=$(.venv/bin/python maint-scripts/escrow.py deploy "$RPC")
echo "escrow at $ESCROW"
# Both instances take escrow payments on this chain.
export DMS_PAYMENT__MODE=escrow DMS_PAYMENT__RPC_URL=$RPC DMS_PAYMENT__CHAIN_ID=31337
export DMS_PAYMENT__ESCROW_ADDRESS=$ESCROW DMS_PAYMENT__REQUIRED_CONFIRMATIONS=1
# Loopback only: the shipped configs listen on every interface; the demo keeps its traffic on this host.
step "starting instance A, the compute provider (dms_config.json, REST $A, libp2p 127.0.0.1:9000)"
DMS_P2P__LISTEN_ADDRESS='["/ip4/127.0.0.1/tcp/9000"]' start a dms_config.json
wait_ready a "$A"
A_ADDR=$(probe json "$A/api/v1/peers/self" "j['addrs'][0]")
step "starting instance B, the service provider (dms_config.second.json, REST $B), bootstrapping to A"
DMS_P2P__LISTEN_ADDRESS='["/ip4/127.0.0.1/tcp/9001"]' DMS_P2P__BOOTSTRAP_PEERS="[\"$A_ADDR\"]" \
  start b dms_config.second.json
wait_ready b "$B"
echo "both ready; logs in $DEMO/a.log and $DEMO/b.log"

step "A: what the machine has"
nunet --dms "$A" capacity --full

read -r CPU MEM < <(probe json "$A/api/v1/onboarding/provisioned" "j['cpu']" "j['memory']")

step "A: a payout wallet"
# Printed from a variable: `tee /dev/stderr` would reopen (and truncate) a log file the demo is redirected to.
wallet=$(nunet --dms "$A" wallet new)
printf '%s\n' "$wallet"
ADDR=$(grep -oE '0x[0-9a-fA-F]{40}' <<<"$wallet" | head -n1)

# Half of the machine on A, a fifth on B (each within the 10-90 % rule), both on channel nunet-test.
step "A: onboarding ($((CPU / 2)) MHz, $((MEM / 2)) MB, channel nunet-test)"
nunet --dms "$A" onboard -m $((MEM / 2)) -c $((CPU / 2)) -n nunet-test -a "$ADDR" -x 1000000
step "B: onboarding ($((CPU / 5)) MHz, $((MEM / 5)) MB, channel nunet-test)"
nunet --dms "$B" onboard -m $((MEM / 5)) -c $((CPU / 5)) -n nunet-test -a "$ADDR" -x 2000000

step "A and B find each other (peer table with advertised capacity)"
A_ID=${A_ADDR##*/}
B_ID=$(probe json "$B/api/v1/peers/self" "j['peer_id']")
# Each side's peer table holds the other's full peer id (the CLI's table shortens ids).
probe wait "$B/api/v1/peers/dht" "$A_ID" --timeout 20 --what "B sees A ($A_ID)"
probe wait "$A/api/v1/peers/dht" "$B_ID" --timeout 20 --what "A sees B ($B_ID)"
echo "B sees:"; nunet --dms "$B" peer list -d
echo "A sees:"; nunet --dms "$A" peer list -d

step "B's wallet settles escrows as arbiter: funding it for gas; a dashboard account to pay with"
nunet --dms "$B" wallet show
.venv/bin/python maint-scripts/escrow.py fund "$RPC" "$(nunet --dms "$B" wallet show | grep -oE '0x[0-9a-fA-F]{40}' | head -n1)" 1000000000000000000
PAYER_KEY=$(.venv/bin/python maint-scripts/escrow.py payer "$RPC" 1000000000000000000)
BEFORE=$(probe balance "$RPC" "$ADDR")
echo "A's payout address $ADDR holds $BEFORE wei"

step "B dispatches a paid busybox job to the best provider (A); every websocket frame is printed"
nunet --dms "$B" run --frames --pay-key "$PAYER_KEY" --rpc-url "$RPC" --cpu 500 --cores 0.5 --memory 64 --duration 60 -- \
  sh -c 'echo "hello from a container on the compute provider"; echo "running as $(id -u) with $(ls /sys/class/net | wc -l) network interface(s)"; echo a line on stderr >&2'

step "B: its jobs and payments (the escrow is released to A once the job completed)"
nunet --dms "$B" jobs
probe wait "$B/api/v1/transactions" '"release"' '"mined"' --timeout 60 --what "B's release of the escrow is mined"
nunet --dms "$B" transactions
AFTER=$(probe balance "$RPC" "$ADDR")
echo "A's payout address now holds $AFTER wei (+$((AFTER - BEFORE)))"
step "A: capacity after the job (all free again)"
nunet --dms "$A" capacity

step "done in $((SECONDS - began)) s (after set-up): stopping both instances"
