#!/usr/bin/python3
"""Print the packaged /etc/nunet/dms_config.json: the repo's dms_config.json with a system service's values.

Kept as a transformation, not a copy, so keys added to the repo's config reach the package unchanged.
"""

import json
import sys

SERVICE = {
    ("general", "data_dir"): "/var/lib/nunet",
    ("rest", "addr"): "127.0.0.1",
    ("rest", "port"): 9999,
    # mDNS multicasts on every interface: opt-in only (docs/testing.md, network rules).
    ("p2p", "mdns"): False,
}


def main(path: str) -> None:
    with open(path) as f:
        cfg = json.load(f)
    for (section, key), value in SERVICE.items():
        cfg.setdefault(section, {})[key] = value
    json.dump(cfg, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
