#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt already uses (the URI of the first enabled "deb" source for
# the suite given, default bookworm), so scripts never name a mirror themselves.
# Reads /etc/apt/sources.list, sources.list.d/*.list (one-line format) and sources.list.d/*.sources (deb822).
set -euo pipefail
suite=${1:-bookworm}

one_line() {
  # deb [arch=amd64 signed-by=...] URI SUITE COMPONENT...
  awk -v suite="$suite" '
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit }
    }' "$@"
}

deb822() {
  # Stanzas separated by blank lines; fields Types, URIs, Suites, Enabled.
  awk -v suite="$suite" '
    function flush() {
      if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ") && uris != "") {
        split(uris, u, " "); print u[1]; found = 1
      }
      types = uris = suites = ""; enabled = "yes"
    }
    BEGIN { enabled = "yes" }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); if (found) exit; next }
    {
      key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
      if (key == "types") types = $0
      else if (key == "uris") uris = $0
      else if (key == "suites") suites = $0
      else if (key == "enabled") enabled = tolower($0)
    }
    END { if (!found) flush() }' "$@"
}

candidates=()
[[ -f /etc/apt/sources.list ]] && candidates+=("$(one_line /etc/apt/sources.list)")
for f in /etc/apt/sources.list.d/*.list; do [[ -f "$f" ]] && candidates+=("$(one_line "$f")"); done
for f in /etc/apt/sources.list.d/*.sources; do [[ -f "$f" ]] && candidates+=("$(deb822 "$f" | head -n1)"); done
for uri in "${candidates[@]}"; do
  if [[ -n "$uri" ]]; then echo "${uri%/}"; exit 0; fi
done
echo "no enabled apt source for $suite in /etc/apt/sources.list{,.d/}" >&2
exit 1
