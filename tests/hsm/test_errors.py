"""Module, token and PIN failures: stable codes, clear messages, no PIN leaks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hsm import config as hsm_config
from hsm.config import HsmConfig, PinSource, find_module
from hsm.errors import Code, HsmError
from hsm.sealer import Sealer
from hsm.softhsm import provision_token, token_labels


def code(fn) -> tuple[Code, str]:
    with pytest.raises(HsmError) as exc:
        fn()
    return exc.value.code, str(exc.value)


def test_missing_module_configured(world) -> None:
    cfg = dataclasses.replace(world.pin_probe, module_path=Path("/nonexistent/libvendor.so"))
    c, msg = code(lambda: Sealer.open(cfg))
    assert c == Code.HSM_MODULE_NOT_FOUND and "/nonexistent/libvendor.so" in msg


def test_missing_module_from_env(monkeypatch) -> None:
    monkeypatch.setenv("PKCS11_MODULE", "/nonexistent/libp11.so")
    c, msg = code(find_module)
    assert c == Code.HSM_MODULE_NOT_FOUND and "PKCS11_MODULE" in msg


def test_no_module_anywhere(monkeypatch) -> None:
    monkeypatch.delenv("PKCS11_MODULE", raising=False)
    monkeypatch.setattr(hsm_config, "SOFTHSM2_CANDIDATES", ("/nonexistent/a.so",))
    c, msg = code(find_module)
    assert c == Code.HSM_MODULE_NOT_FOUND and "softhsm2" in msg


def test_module_that_is_not_pkcs11(world, tmp_path) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"not a shared object")
    cfg = dataclasses.replace(world.pin_probe, module_path=fake)
    c, _ = code(lambda: Sealer.open(cfg))
    assert c == Code.HSM_MODULE_NOT_FOUND


def test_pkcs11_module_env_overrides_discovery(world, monkeypatch) -> None:
    real = find_module()
    monkeypatch.setenv("PKCS11_MODULE", str(real))
    assert find_module() == real
    with Sealer.open(world.fresh(), create_key=True) as s:  # module found through the env
        assert s.key_versions() == [1]


def test_absent_token(world) -> None:
    cfg = dataclasses.replace(world.pin_probe, token_label="no-such-token")
    c, msg = code(lambda: Sealer.open(cfg))
    assert c == Code.HSM_TOKEN_NOT_FOUND and "no-such-token" in msg


def test_wrong_pin_then_right_pin(world, tmp_path, monkeypatch) -> None:
    wrong = "wrong-pin-0123456789"
    monkeypatch.setenv("TEST_WRONG_PIN", wrong)
    cfg = dataclasses.replace(world.pin_probe, pin=PinSource(env="TEST_WRONG_PIN"))
    c, msg = code(lambda: Sealer.open(cfg))
    assert c == Code.HSM_PIN_INCORRECT
    assert wrong not in msg and "TEST_WRONG_PIN" in msg
    real = world.pin_probe.pin.read()
    assert real not in msg
    with Sealer.open(world.pin_probe, create_key=True) as s:
        assert s.key_versions() == [1]


def test_pin_missing(world, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TEST_UNSET_PIN", raising=False)
    for pin in (
        PinSource(env="TEST_UNSET_PIN"),
        PinSource(file=tmp_path / "absent.pin"),
    ):
        c, _ = code(lambda pin=pin: Sealer.open(dataclasses.replace(world.pin_probe, pin=pin)))
        assert c == Code.HSM_PIN_MISSING
    empty = tmp_path / "empty.pin"
    empty.write_text("\n")
    c, _ = code(lambda: PinSource(file=empty).read())
    assert c == Code.HSM_PIN_MISSING


def test_module_env_conflict(world, tmp_path) -> None:
    Sealer.open(world.fresh()).close()  # the module is loaded with the session's conf
    cfg = dataclasses.replace(
        world.pin_probe, module_env={"SOFTHSM2_CONF": str(tmp_path / "other.conf")}
    )
    c, msg = code(lambda: Sealer.open(cfg))
    assert c == Code.HSM_MODULE_ENV_CONFLICT and "SOFTHSM2_CONF" in msg


def test_nothing_secret_in_reprs(world) -> None:
    cfg = world.pin_probe
    pin = cfg.pin.read()
    for text in (repr(cfg), str(cfg), repr(cfg.pin), str(cfg.to_json())):
        assert pin not in text
    assert HsmConfig.from_json(cfg.to_json()) == cfg
    with Sealer.open(world.fresh(), create_key=True) as s:
        assert pin not in repr(s)


def test_provisioning_is_idempotent_and_clean_on_failure(world) -> None:
    home = world.home
    again = provision_token(home, "node-1")
    assert again == world.nodes[1]
    labels = token_labels(home)
    before = sorted(p.name for p in home.pins.iterdir())
    too_long = "x" * 40  # PKCS#11 token labels are 32 bytes: softhsm2-util refuses
    c, _ = code(lambda: provision_token(home, too_long))
    assert c == Code.HSM_PROVISIONING_FAILED
    assert sorted(p.name for p in home.pins.iterdir()) == before
    assert token_labels(home) == labels


def test_pin_files_are_private(world) -> None:
    for path in world.home.pins.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
