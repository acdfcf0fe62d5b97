#!/usr/bin/env bash
# Starts a Docker engine (Debian's docker.io) in the background when none answers.
# --iptables=false --bridge=none: containers get loopback only, and the host's firewall is left alone.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install docker.io" >&2; exit 1; }
log=/var/log/dms-dockerd.log
echo "==> starting dockerd (log: $log)" >&2
# In its own session: stopping whatever started it (a test run killed with its process group) leaves the
# engine running. The log is appended to, so an engine that died still tells why after a restart.
setsid nohup dockerd --iptables=false --bridge=none >>"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 0.5
done
echo "dockerd did not answer within 30 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
