"""The HSM part of ``custody init``: tokens, sealing keys, sealed node identities.

Development profile (default): one SoftHSM2 home in ``<data-dir>/hsm`` with
tokens ``node-1..n`` and ``backup`` and their PIN files (mode 0600), written
by :func:`hsm.softhsm.provision_tokens`. Vendor profile: the caller gives an
``hsm.json`` naming tokens that already exist; their PINs come from the
environment (``CUSTODY_NODE_<i>_HSM_PIN``, ``CUSTODY_BACKUP_HSM_PIN``).

The token work runs in a child process (``python -m custody.hsm_setup``):
a process loads a PKCS#11 module once, with one configuration, and sees only
the tokens that existed then, while ``custody init`` may run many times in
one process (the test suites do). The child creates each node's sealing key
(AES-256, non-extractable) if it has none, generates the node's identity,
seals it in the token and writes ``node-<i>/identity.sealed``; it creates the
backup key pair in the backup token unless it exists and writes its public
half. Only public identities come back to the parent.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from custody.config import ConfigError
from custody.sealed_files import identity_path, write_new_file
from hsm.backup import BackupKeyHolder
from hsm.deployment import FILE, HsmDeployment
from hsm.errors import Code, HsmError
from hsm.sealer import Sealer
from hsm.softhsm import provision_tokens
from signer_nodes.node.sealing import HsmSealer, identity_context
from signer_nodes.wire.identity import NodeIdentity, NodePublicIdentity


class HsmSetupError(ConfigError):
    """``custody init`` could not set up the HSM; ``code`` is the HSM layer's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def setup_hsm(
    data_dir: Path, node_ids: list[int], *, hsm_config: Path | None = None
) -> dict[int, NodePublicIdentity]:
    """Write ``<data_dir>/hsm.json``, prepare every token, seal each node's new
    identity; return the public identities. ``data_dir`` is ``custody init``'s
    staging directory (removed whole on failure)."""
    try:
        if hsm_config is None:
            deployment = HsmDeployment.development(data_dir, node_ids)
            assert deployment.home is not None
            labels = [*(deployment.node_label(i) for i in node_ids), deployment.backup.token_label]
            provision_tokens(deployment.home, labels, module_path=deployment.module_path)
        else:
            deployment = _vendor(data_dir, hsm_config, node_ids)
        deployment.save()
    except HsmError as exc:
        raise HsmSetupError(exc.code, exc.message) from None
    return _run_child(data_dir, node_ids)


def _vendor(data_dir: Path, path: Path, node_ids: list[int]) -> HsmDeployment:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HsmError(
            Code.HSM_CONFIG_INVALID, f"{path}: unreadable ({type(exc).__name__})"
        ) from None
    if isinstance(raw, dict) and not raw.get("cluster_id"):
        raw = {**raw, "cluster_id": secrets.token_hex(16)}
    deployment = HsmDeployment.from_json(raw, data_dir, path)
    missing = sorted(set(node_ids) - set(deployment.nodes))
    if missing:
        raise HsmError(Code.HSM_CONFIG_INVALID, f"{path}: no token for nodes {missing}")
    return deployment


def _run_child(data_dir: Path, node_ids: list[int]) -> dict[int, NodePublicIdentity]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    child = subprocess.run(
        [sys.executable, "-m", "custody.hsm_setup"],
        input=json.dumps({"data_dir": str(data_dir), "nodes": node_ids}),
        env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        answer = json.loads(child.stdout)
    except ValueError:
        answer = None
    if child.returncode != 0 or not isinstance(answer, dict):
        if isinstance(answer, dict) and "code" in answer:
            raise HsmSetupError(str(answer["code"]), str(answer["message"]))
        raise HsmSetupError(
            Code.HSM_PROVISIONING_FAILED,
            f"HSM setup failed: {child.stderr.strip()[-300:] or child.returncode}",
        )
    return {
        int(i): NodePublicIdentity(
            int(i), bytes.fromhex(p["signing"]), bytes.fromhex(p["encryption"])
        )
        for i, p in answer["nodes"].items()
    }


def _child(data_dir: Path, node_ids: list[int]) -> dict[str, object]:
    deployment = HsmDeployment.load(data_dir)
    publics: dict[str, dict[str, str]] = {}
    for i in node_ids:
        config = deployment.node_token(i, deployment.node_pin(i))
        with Sealer.open(config, create_key=True) as token:
            identity = NodeIdentity.generate(i)
            blob = HsmSealer(i, token).seal(identity.to_bytes(), identity_context(i))
        write_new_file(identity_path(data_dir, i), blob)
        publics[str(i)] = {
            "signing": identity.public.signing_key.hex(),
            "encryption": identity.public.encryption_key.hex(),
        }
        del identity
    backup = deployment.backup_token(deployment.backup_pin())
    try:
        holder = BackupKeyHolder.open(backup, label=deployment.backup.key_label)
    except HsmError as exc:
        if exc.code != Code.BACKUP_KEY_NOT_FOUND:
            raise
        holder = BackupKeyHolder.generate(backup, label=deployment.backup.key_label)
    try:
        write_new_file(deployment.public_key_path, holder.public_key.to_pem())
        fingerprint = holder.public_key.fingerprint
    finally:
        holder.close()
    return {"nodes": publics, "backup_key_sha256": fingerprint, "config": FILE}


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        answer = _child(Path(request["data_dir"]), [int(i) for i in request["nodes"]])
    except HsmError as exc:
        print(json.dumps({"code": exc.code.value, "message": exc.message}))
        return 2
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
