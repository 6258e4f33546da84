"""A cluster's HSM deployment: the file ``<data-dir>/hsm.json``.

It names, for every signer node and for the backup key, the token and how to
reach it, and nothing secret. Using another vendor's PKCS#11 module is a
matter of editing these keys (see ``docs/hsm.md``)::

    {"format": 1,
     "cluster_id": "3f0c...",              # random; written into every backup
     "module_path": null,                  # null: $PKCS11_MODULE, else SoftHSM2's usual paths
     "module_env": {},                     # environment the module reads at C_Initialize
     "softhsm_home": "hsm",                # development profile only (see below), else null
     "seal_key_prefix": "seal-key-v",      # CKA_LABEL of sealing keys: <prefix><version>
     "oaep_hash": "sha1",                  # RSA-OAEP hash of the backup key (SoftHSM2: sha1)
     "nodes": {"1": {"token_label": "node-1"}, ...},
     "backup": {"token_label": "backup", "key_label": "backup-key",
                "public_key": "hsm/backup-key.pem"}}

Relative paths are relative to the data dir, so the directory can be moved
or mounted elsewhere. ``softhsm_home`` marks the development profile: a
SoftHSM2 home (:class:`~hsm.softhsm.SoftHsmHome`) inside the data dir, whose
``softhsm2.conf`` is added to ``module_env`` as ``SOFTHSM2_CONF`` and
rewritten on load if the data dir moved (SoftHSM2 needs an absolute token
directory).

PINs are never in this file. Node ``i`` reads its PIN from a file given on
its command line (``--pin-file``) or from an environment variable
(``--pin-env``, by default ``CUSTODY_NODE_<i>_HSM_PIN``); the backup token's
PIN comes from ``CUSTODY_BACKUP_HSM_PIN`` or a file. The development profile
keeps PIN files (mode 0600) in ``<softhsm_home>/pins/<token label>.pin``,
which ``custody up`` passes to the nodes and the ``custody`` commands use
when no variable is set.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsm.config import HsmConfig, OaepHash, PinSource
from hsm.errors import Code, HsmError
from hsm.softhsm import CONF_ENV, SoftHsmHome

FILE = "hsm.json"
FORMAT = 1
BACKUP_PIN_ENV = "CUSTODY_BACKUP_HSM_PIN"
DEV_HOME = "hsm"


def node_pin_env(node_id: int) -> str:
    """The default environment variable holding node ``node_id``'s token PIN."""
    return f"CUSTODY_NODE_{node_id}_HSM_PIN"


def _invalid(path: Path, why: str) -> HsmError:
    return HsmError(Code.HSM_CONFIG_INVALID, f"{path}: {why}")


@dataclass(frozen=True, slots=True)
class BackupSpec:
    token_label: str
    key_label: str = "backup-key"
    #: The backup key's public half (PEM), relative to the data dir.
    public_key: str = f"{DEV_HOME}/backup-key.pem"


@dataclass(frozen=True, slots=True)
class HsmDeployment:
    """The parsed ``hsm.json`` of the data dir ``data_dir``; contains no secret."""

    data_dir: Path
    cluster_id: str
    nodes: Mapping[int, str]  # node id -> token label
    backup: BackupSpec
    module_path: Path | None = None
    module_env: Mapping[str, str] = field(default_factory=dict)
    softhsm_home: str | None = None
    seal_key_prefix: str = "seal-key-v"
    oaep_hash: OaepHash = "sha256"

    # -- construction -----------------------------------------------------------

    @classmethod
    def development(
        cls, data_dir: Path, node_ids: Iterable[int], *, module_path: Path | None = None
    ) -> HsmDeployment:
        """The SoftHSM2 development profile: tokens ``node-<i>`` and ``backup``
        in ``<data-dir>/hsm`` (SoftHSM 2.6 supports OAEP only with SHA-1)."""
        return cls(
            data_dir=data_dir,
            cluster_id=secrets.token_hex(16),
            nodes={i: f"node-{i}" for i in node_ids},
            backup=BackupSpec("backup"),
            module_path=module_path,
            softhsm_home=DEV_HOME,
            oaep_hash="sha1",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "cluster_id": self.cluster_id,
            "module_path": str(self.module_path) if self.module_path else None,
            "module_env": dict(self.module_env),
            "softhsm_home": self.softhsm_home,
            "seal_key_prefix": self.seal_key_prefix,
            "oaep_hash": self.oaep_hash,
            "nodes": {str(i): {"token_label": label} for i, label in sorted(self.nodes.items())},
            "backup": {
                "token_label": self.backup.token_label,
                "key_label": self.backup.key_label,
                "public_key": self.backup.public_key,
            },
        }

    def save(self) -> None:
        path = self.data_dir / FILE
        tmp = path.with_name(f".{FILE}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, data_dir: Path | str) -> HsmDeployment:
        """Read ``<data_dir>/hsm.json`` (``HSM_CONFIG_INVALID`` if absent or malformed);
        in the development profile, point ``softhsm2.conf`` at this data dir."""
        data_dir = Path(data_dir).resolve()
        path = data_dir / FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise _invalid(path, "not found; 'custody init' writes it") from None
        except (OSError, ValueError) as exc:
            raise _invalid(path, f"unreadable ({type(exc).__name__})") from None
        deployment = cls.from_json(raw, data_dir, path)
        home = deployment.home
        if home is not None:
            home.ensure()
        return deployment

    @classmethod
    def from_json(cls, raw: Any, data_dir: Path, path: Path) -> HsmDeployment:
        try:
            if raw["format"] != FORMAT:
                raise _invalid(path, f"unsupported format {raw['format']!r}")
            oaep = raw.get("oaep_hash", "sha256")
            if oaep not in ("sha1", "sha256"):
                raise _invalid(path, f"oaep_hash must be sha1 or sha256, not {oaep!r}")
            nodes = {int(i): str(n["token_label"]) for i, n in dict(raw["nodes"]).items()}
            backup = dict(raw["backup"])
            module = raw.get("module_path")
            deployment = cls(
                data_dir=data_dir,
                cluster_id=str(raw["cluster_id"]),
                nodes=nodes,
                backup=BackupSpec(
                    str(backup["token_label"]),
                    str(backup.get("key_label", "backup-key")),
                    str(backup.get("public_key", f"{DEV_HOME}/backup-key.pem")),
                ),
                module_path=Path(module) if module else None,
                module_env={str(k): str(v) for k, v in dict(raw.get("module_env", {})).items()},
                softhsm_home=raw.get("softhsm_home") or None,
                seal_key_prefix=str(raw.get("seal_key_prefix", "seal-key-v")),
                oaep_hash=oaep,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _invalid(path, f"missing or malformed field ({type(exc).__name__})") from None
        labels = [*nodes.values(), deployment.backup.token_label]
        if len(set(labels)) != len(labels) or not all(labels):
            raise _invalid(path, "token labels must be non-empty and distinct")
        return deployment

    # -- tokens -----------------------------------------------------------------

    @property
    def home(self) -> SoftHsmHome | None:
        return SoftHsmHome(self.data_dir / self.softhsm_home) if self.softhsm_home else None

    def environment(self) -> dict[str, str]:
        env = dict(self.module_env)
        if self.home is not None:
            env[CONF_ENV] = str(self.home.conf.resolve())
        return env

    def node_label(self, node_id: int) -> str:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise _invalid(
                self.data_dir / FILE, f"no token configured for node {node_id}"
            ) from None

    def token(self, label: str, pin: PinSource) -> HsmConfig:
        return HsmConfig(
            token_label=label,
            pin=pin,
            module_path=self.module_path,
            module_env=self.environment(),
            seal_key_prefix=self.seal_key_prefix,
            oaep_hash=self.oaep_hash,
        )

    def node_token(self, node_id: int, pin: PinSource) -> HsmConfig:
        return self.token(self.node_label(node_id), pin)

    def backup_token(self, pin: PinSource) -> HsmConfig:
        return self.token(self.backup.token_label, pin)

    @property
    def public_key_path(self) -> Path:
        return self.data_dir / self.backup.public_key

    # -- PINs -------------------------------------------------------------------

    def dev_pin_file(self, label: str) -> Path | None:
        """The development profile's PIN file of token ``label`` (``None`` otherwise)."""
        return self.home.pins / f"{label}.pin" if self.home is not None else None

    def _pin(self, label: str, env: str, *, file: Path | None, dev_fallback: bool) -> PinSource:
        if file is not None:
            return PinSource(file=file)
        if os.environ.get(env) or not dev_fallback:
            return PinSource(env=env)
        dev = self.dev_pin_file(label)
        if dev is not None and dev.exists():
            return PinSource(file=dev)
        return PinSource(env=env)  # reading it raises HSM_PIN_MISSING naming the variable

    def node_pin(
        self,
        node_id: int,
        *,
        file: Path | None = None,
        env: str | None = None,
        dev_fallback: bool = True,
    ) -> PinSource:
        """Where node ``node_id``'s PIN comes from: ``file``, else the variable
        ``env`` (default ``CUSTODY_NODE_<i>_HSM_PIN``) if set, else (with
        ``dev_fallback``) the development PIN file if it exists."""
        if file is not None and env is not None:
            raise ValueError("give a PIN file or a PIN variable, not both")
        return self._pin(
            self.node_label(node_id),
            env or node_pin_env(node_id),
            file=file,
            dev_fallback=dev_fallback and env is None,
        )

    def backup_pin(self, *, file: Path | None = None) -> PinSource:
        """The backup token's PIN: ``file``, else ``CUSTODY_BACKUP_HSM_PIN``, else
        the development PIN file."""
        return self._pin(self.backup.token_label, BACKUP_PIN_ENV, file=file, dev_fallback=True)
