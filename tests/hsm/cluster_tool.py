"""Helper processes for the cluster tests (``python -m tests.hsm.cluster_tool ...``).

A process loads the PKCS#11 module once, with one SoftHSM2 configuration; the
test session already uses another one (``conftest.world``), so everything
that talks to a cluster's tokens runs here, in a child process:

- ``secrets DATA_DIR``: unseal every sealed value of every node through its
  token and print, per node, the secrets in the clear (hex) that must never
  be found on disk: whole plaintexts and the scalars and keys inside them.
- ``cli DATA_DIR [COMMANDS]``: run a JSON list of ``custody hsm|backup``
  command lines (the argument, else stdin) through the typer apps in this one
  process; print each exit code, stdout and stderr as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from custody.config import ClusterConfig
from custody.hsm_commands import backup_app, hsm_app
from custody.rotation import NodeMaterial
from hsm.deployment import HsmDeployment
from hsm.sealer import MAGIC, RecordKind, SealedBlob, Sealer
from signer_nodes.mpc.frost import SUITES, KeyPackage, SigningNonces


def _needles(kind: RecordKind, plaintext: bytes) -> list[bytes]:
    out = [plaintext]
    if kind == RecordKind.SHARE:
        key = KeyPackage.from_bytes(plaintext)
        out.append(key.suite.group.serialize_scalar(key.signing_share))
    elif kind == RecordKind.NONCE:
        for suite in SUITES.values():
            try:
                nonces = SigningNonces.from_bytes(suite, plaintext)
            except Exception:
                continue
            out += [suite.group.serialize_scalar(s) for s in nonces.consume()]
            break
    elif kind == RecordKind.IDENTITY:
        out += [plaintext[6:38], plaintext[38:70]]  # Ed25519 and X25519 private keys
    return out


def node_secrets(data_dir: Path) -> dict[str, list[dict[str, object]]]:
    """Per node, every sealed value: its kind, key id, plaintext and needles (hex)."""
    config = ClusterConfig.load(data_dir)
    deployment = HsmDeployment.load(data_dir)
    result: dict[str, list[dict[str, object]]] = {}
    for node in config.nodes:
        i = node.node_id
        material = NodeMaterial(config, i)
        token = deployment.node_token(i, deployment.node_pin(i))
        found: list[dict[str, object]] = []
        with Sealer.open(token) as sealer:
            for cell in material.cells():
                if not cell.blob.startswith(MAGIC):
                    continue
                context = SealedBlob.parse(cell.blob).context
                plaintext = sealer.unseal(cell.blob, context)
                found.append(
                    {
                        "kind": context.kind.value,
                        "key_id": context.key_id,
                        "plaintext": plaintext.hex(),
                        "needles": [n.hex() for n in _needles(context.kind, plaintext)],
                    }
                )
        material.close()
        result[str(i)] = found
    return result


def main() -> None:
    command, data_dir = sys.argv[1], Path(sys.argv[2])
    if command == "secrets":
        print(json.dumps(node_secrets(data_dir)))
        return
    import typer

    app = typer.Typer()
    app.add_typer(hsm_app, name="hsm")
    app.add_typer(backup_app, name="backup")
    runner = CliRunner()
    results = []
    commands = sys.argv[3] if len(sys.argv) > 3 else sys.stdin.read()
    for args in json.loads(commands):
        r = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
        results.append({"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
