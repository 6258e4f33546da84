"""SoftHSM2 tokens for development and tests.

Layout: one SoftHSM2 configuration per data dir, ``<home>/softhsm2.conf``,
whose token directory ``<home>/tokens`` holds every token of the cluster
(``node-1`` .. ``node-n`` and ``backup``). One configuration for all tokens
is what lets one process (the CLI, a test session) reach several tokens:
SoftHSM2 reads ``SOFTHSM2_CONF`` once, at ``C_Initialize``. Every returned
:class:`~hsm.config.HsmConfig` carries ``SOFTHSM2_CONF`` in ``module_env``.

PINs never appear on a command line: ``softhsm2-util --init-token`` gets
throw-away PINs, and a fresh child process (which sees the new token, unlike
a process that initialised the module earlier) replaces them through
``C_SetPIN`` with the real PINs it reads from its stdin. The user PIN goes to
``<home>/pins/<label>.pin`` (mode 0600) unless the caller gives a
:class:`~hsm.config.PinSource` that already holds one; the SO PIN (only needed
to unlock a locked user PIN) to ``<label>.so-pin``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hsm.config import HsmConfig, PinSource, find_module
from hsm.errors import Code, HsmError

CONF_ENV = "SOFTHSM2_CONF"


@dataclass(frozen=True, slots=True)
class SoftHsmHome:
    """The directory holding one SoftHSM2 configuration and its tokens."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "softhsm2.conf"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens"

    @property
    def pins(self) -> Path:
        return self.root / "pins"

    def config(self, label: str, *, module_path: Path | None = None) -> HsmConfig:
        """The config of token ``label`` with the default PIN file (no provisioning)."""
        return HsmConfig(
            token_label=label,
            pin=PinSource(file=self.pins / f"{label}.pin"),
            module_path=module_path,
            module_env={CONF_ENV: str(self.conf.resolve())},
            oaep_hash="sha1",
        )

    def ensure(self) -> None:
        """Create the directories and the configuration file (idempotent)."""
        for d in (self.root, self.tokens, self.pins):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = (
            f"directories.tokendir = {self.tokens.resolve()}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        if not self.conf.exists() or self.conf.read_text() != text:
            _write_private(self.conf, text, exclusive=False)


def _write_private(path: Path, text: str, *, exclusive: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if exclusive and path.exists():
            raise HsmError(Code.HSM_PROVISIONING_FAILED, f"{path} already exists")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def softhsm_util() -> str:
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise HsmError(
            Code.HSM_MODULE_NOT_FOUND, "softhsm2-util not found (Debian package 'softhsm2')"
        )
    return tool


def provision_token(
    home: SoftHsmHome,
    label: str,
    *,
    pin: PinSource | None = None,
    module_path: Path | None = None,
) -> HsmConfig:
    """Initialise token ``label`` under ``home`` unless it exists; return its config."""
    return provision_tokens(
        home, [label], pins={label: pin} if pin else None, module_path=module_path
    )[label]


def provision_tokens(
    home: SoftHsmHome,
    labels: list[str],
    *,
    pins: dict[str, PinSource] | None = None,
    module_path: Path | None = None,
) -> dict[str, HsmConfig]:
    """Initialise every token in ``labels`` that does not exist yet (one child
    process for all); return each token's config.

    Idempotent: existing tokens are left untouched (their PIN source must be
    the one given now, or the default PIN file). On failure nothing is left
    behind: the tokens and PIN files written by this call are removed.
    """
    home.ensure()
    module = find_module(module_path)
    env = {CONF_ENV: str(home.conf.resolve())}
    configs = {
        label: HsmConfig(
            token_label=label,
            pin=(pins or {}).get(label) or PinSource(file=home.pins / f"{label}.pin"),
            module_path=module_path,
            module_env=env,
            oaep_hash="sha1",
        )
        for label in labels
    }
    existing = token_labels(home)
    todo = [label for label in labels if label not in existing]
    if not todo:
        return configs
    written: list[Path] = []
    try:
        tokens = []
        for label in todo:
            config = configs[label]
            if (pins or {}).get(label) is None:
                assert config.pin.file is not None
                _write_private(config.pin.file, secrets.token_urlsafe(24) + "\n")
                written.append(config.pin.file)
            so_file = home.pins / f"{label}.so-pin"
            # A left-over SO PIN file belonged to a deleted token of this label.
            _write_private(so_file, secrets.token_urlsafe(24) + "\n", exclusive=False)
            written.append(so_file)
            tokens.append(
                {
                    "label": label,
                    "user_pin": config.pin.read(),
                    "so_pin": so_file.read_text().strip(),
                }
            )
        child = subprocess.run(
            [sys.executable, "-m", "hsm.softhsm"],
            input=json.dumps({"module": str(module), "tokens": tokens}),
            env={**os.environ, **env, "PYTHONPATH": _pythonpath()},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        del tokens
        if child.returncode != 0:
            raise HsmError(
                Code.HSM_PROVISIONING_FAILED,
                f"initialising SoftHSM2 tokens {', '.join(todo)} failed: "
                f"{child.stderr.strip()[-300:]}",
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for label in todo:
            _delete_token(home, label)
        raise
    return configs


def _pythonpath() -> str:
    """Make ``hsm`` importable in the child whether or not it is installed."""
    root = str(Path(__file__).resolve().parents[1])
    rest = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{rest}" if rest else root


def token_labels(home: SoftHsmHome) -> set[str]:
    """Labels of the initialised tokens under ``home`` (asks ``softhsm2-util``,
    which reads the token directory afresh)."""
    out = subprocess.run(
        [softhsm_util(), "--show-slots"],
        env={**os.environ, CONF_ENV: str(home.conf.resolve())},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout
    labels = set()
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Label" and value.strip():
            labels.add(value.strip())
    return labels


def delete_token(home: SoftHsmHome, label: str) -> None:
    """Delete token ``label`` and everything in it (``softhsm2-util --delete-token``);
    a no-op if there is none. Its PIN files stay."""
    _delete_token(home, label)


def _delete_token(home: SoftHsmHome, label: str) -> None:
    subprocess.run(
        [softhsm_util(), "--delete-token", "--token", label],
        env={**os.environ, CONF_ENV: str(home.conf.resolve())},
        capture_output=True,
        check=False,
        timeout=30,
    )


def _child_main() -> None:
    """Child process: init the token with throw-away PINs, then ``C_SetPIN``
    both PINs (read from stdin) so they never reach a command line."""
    import pkcs11

    request = json.loads(sys.stdin.read())
    temporary = {}
    for t in request["tokens"]:
        tmp_user, tmp_so = secrets.token_hex(8), secrets.token_hex(8)
        result = subprocess.run(
            [
                softhsm_util(),
                "--init-token",
                "--free",
                "--label",
                t["label"],
                "--so-pin",
                tmp_so,
                "--pin",
                tmp_user,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            sys.exit(f"{t['label']}: {result.stderr.strip() or result.stdout.strip()}")
        temporary[t["label"]] = (tmp_user, tmp_so)
    lib = pkcs11.lib(request["module"])
    for t in request["tokens"]:
        tmp_user, tmp_so = temporary[t["label"]]
        token = lib.get_token(token_label=t["label"])
        with token.open(rw=True, user_pin=tmp_user) as session:
            session.set_pin(tmp_user, t["user_pin"])
        with token.open(rw=True, so_pin=tmp_so) as session:
            session.set_pin(tmp_so, t["so_pin"])


if __name__ == "__main__":
    _child_main()
