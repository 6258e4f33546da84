"""Rewrite a data dir's addresses for docker-compose: nodes listen on
``0.0.0.0:50051`` inside their containers and are reached as ``node-<i>:50051``;
the coordinator listens on ``0.0.0.0:50051``.

    python -m custody.compose_config ./custody-data

Certificates already carry each node's name (``node-<i>``) as a DNS SAN, so
mTLS keeps working under the service names. Nodes bind the address in the
config; the compose file maps it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m custody.compose_config DATA_DIR", file=sys.stderr)
        return 2
    path = Path(args[0]) / "custody.json"
    raw = json.loads(path.read_text())
    for node in raw["nodes"]:
        node["address"] = f"node-{node['id']}:50051"
    raw["coordinator"]["address"] = "0.0.0.0:50051"
    path.write_text(json.dumps(raw, indent=2) + "\n")
    print(f"rewrote {path} for docker compose")
    return 0


if __name__ == "__main__":
    sys.exit(main())
