"""Rewrite a data dir's addresses for docker-compose.yml.

    python -m custody.compose_config ./custody-data

- Node ``i`` is reached, and binds, as ``node-<i>:50051``: its service name, which the
  compose network resolves to the container (its certificate names it as a DNS SAN).
- The coordinator binds ``0.0.0.0:50051`` inside its container (``listen_address``)
  and is dialled at ``localhost:50051``, the port compose publishes on the host: the
  ``custody`` commands and the Python client run there with the same data dir, and
  its certificate names ``localhost``. Dialling the bind address instead fails
  mTLS hostname verification (``0.0.0.0`` is in no certificate).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

PORT = 50051


def rewrite(raw: dict[str, Any]) -> dict[str, Any]:
    """``custody.json``'s content with the compose addresses (a new dict)."""
    out = copy.deepcopy(raw)
    for node in out["nodes"]:
        node["address"] = f"node-{node['id']}:{PORT}"
    out["coordinator"]["address"] = f"localhost:{PORT}"
    out["coordinator"]["listen_address"] = f"0.0.0.0:{PORT}"
    return out


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m custody.compose_config DATA_DIR", file=sys.stderr)
        return 2
    path = Path(args[0]) / "custody.json"
    path.write_text(json.dumps(rewrite(json.loads(path.read_text())), indent=2) + "\n")
    print(f"rewrote {path} for docker compose")
    return 0


if __name__ == "__main__":
    sys.exit(main())
