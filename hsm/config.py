"""Where the PKCS#11 module, the token and its PIN are.

An :class:`HsmConfig` names everything needed to reach one token and nothing
secret: the PIN is referenced (an environment variable name or a file path)
and read only when a session is opened (:meth:`PinSource.read`). A vendor
HSM is used by configuration alone: its module path (or ``PKCS11_MODULE``),
its token label, and any environment the module reads at ``C_Initialize``
(``module_env``; SoftHSM2's is ``SOFTHSM2_CONF``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hsm.errors import Code, HsmError

MODULE_ENV = "PKCS11_MODULE"

#: Standard SoftHSM2 locations: Debian/Ubuntu (both the compat symlink and the
#: multiarch path), Fedora/RHEL, Homebrew and FreeBSD.
SOFTHSM2_CANDIDATES: tuple[str, ...] = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)

#: RSA-OAEP hash for the backup key (PKCS#11 ``CKM_RSA_PKCS_OAEP`` with
#: ``CK_RSA_PKCS_OAEP_PARAMS{hashAlg, mgf}``). SoftHSM 2.6 accepts only
#: ``CKM_SHA_1``/``CKG_MGF1_SHA1`` for OAEP decrypt and unwrap (anything else
#: is ``CKR_ARGUMENTS_BAD``); OAEP's security does not rest on collision
#: resistance, so SHA-1 is acceptable there, and HSMs that support it use SHA-256.
OaepHash = Literal["sha1", "sha256"]


def find_module(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The PKCS#11 module to load: ``explicit``, else ``$PKCS11_MODULE``,
    else the first SoftHSM2 library found in the standard places."""
    if explicit is not None or os.environ.get(MODULE_ENV):
        path = Path(explicit if explicit is not None else os.environ[MODULE_ENV])
        if not path.is_file():
            source = "configured" if explicit is not None else f"${MODULE_ENV}"
            raise HsmError(
                Code.HSM_MODULE_NOT_FOUND, f"PKCS#11 module {path} ({source}) does not exist"
            )
        return path
    for candidate in SOFTHSM2_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise HsmError(
        Code.HSM_MODULE_NOT_FOUND,
        f"no PKCS#11 module: set {MODULE_ENV} or install SoftHSM2 (Debian package "
        f"'softhsm2'); looked in {', '.join(SOFTHSM2_CANDIDATES)}",
    )


@dataclass(frozen=True, slots=True)
class PinSource:
    """Where a token's user PIN comes from: an environment variable or a file.

    Holds only the reference, so it may be logged and stored; the PIN itself
    is read by :meth:`read` at session-open time and never kept.
    """

    env: str | None = None
    file: Path | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("PinSource needs exactly one of env= or file=")

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def read(self) -> str:
        """The PIN, stripped of one trailing newline; ``HSM_PIN_MISSING`` if absent."""
        if self.env is not None:
            value = os.environ.get(self.env)
        else:
            assert self.file is not None
            try:
                value = self.file.read_text(encoding="utf-8")
            except FileNotFoundError:
                value = None
            except OSError as exc:
                raise HsmError(
                    Code.HSM_PIN_MISSING, f"cannot read PIN {self.describe()}: {exc.strerror}"
                ) from None
        if value is not None:
            value = value.removesuffix("\n").removesuffix("\r")
        if not value:
            raise HsmError(Code.HSM_PIN_MISSING, f"token PIN not set: {self.describe()}")
        return value

    def to_json(self) -> dict[str, str]:
        return {"env": self.env} if self.env else {"file": str(self.file)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PinSource:
        if "env" in raw:
            return cls(env=str(raw["env"]))
        return cls(file=Path(str(raw["file"])))


@dataclass(frozen=True, slots=True)
class HsmConfig:
    """How to reach one token. Contains no secret; safe to log and persist."""

    token_label: str
    pin: PinSource
    module_path: Path | None = None
    #: Environment the module reads at ``C_Initialize`` (e.g. ``SOFTHSM2_CONF``);
    #: set before the module is first loaded in this process.
    module_env: Mapping[str, str] = field(default_factory=dict)
    #: Prefix of the sealing keys' ``CKA_LABEL``; versions are ``{prefix}{n}``.
    seal_key_prefix: str = "seal-key-v"
    oaep_hash: OaepHash = "sha256"

    def module(self) -> Path:
        return find_module(self.module_path)

    def to_json(self) -> dict[str, Any]:
        return {
            "token_label": self.token_label,
            "pin": self.pin.to_json(),
            "module_path": str(self.module_path) if self.module_path else None,
            "module_env": dict(self.module_env),
            "seal_key_prefix": self.seal_key_prefix,
            "oaep_hash": self.oaep_hash,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HsmConfig:
        oaep = raw.get("oaep_hash", "sha256")
        if oaep not in ("sha1", "sha256"):
            raise ValueError(f"unsupported oaep_hash {oaep!r}")
        module = raw.get("module_path")
        return cls(
            token_label=str(raw["token_label"]),
            pin=PinSource.from_json(raw["pin"]),
            module_path=Path(module) if module else None,
            module_env={str(k): str(v) for k, v in dict(raw.get("module_env", {})).items()},
            seal_key_prefix=str(raw.get("seal_key_prefix", "seal-key-v")),
            oaep_hash=oaep,
        )
