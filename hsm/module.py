"""Loading a PKCS#11 module and opening logged-in sessions on a token.

PKCS#11 modules read their configuration when ``C_Initialize`` runs (SoftHSM2
reads ``SOFTHSM2_CONF`` then), and a process can initialise a module only
once. So :func:`load_module` sets ``HsmConfig.module_env`` before the first
load and refuses (``HSM_MODULE_ENV_CONFLICT``) a later config that needs a
different environment: several tokens in one process must share one module
configuration (for SoftHSM2, one ``softhsm2.conf`` whose token directory
holds every token). Tokens initialised by another process after the load
appear only after the module is re-initialised (a process restart).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pkcs11
from pkcs11 import Mechanism, Session, Token
from pkcs11 import exceptions as p11e

from hsm.config import HsmConfig
from hsm.errors import Code, HsmError

_lock = threading.Lock()
_loaded_env: dict[str, dict[str, str]] = {}


def load_module(config: HsmConfig) -> Any:
    """The initialised module named by ``config`` (``C_Initialize`` on first use)."""
    path = str(config.module())
    with _lock:
        wanted = dict(config.module_env)
        if path in _loaded_env:
            previous = _loaded_env[path]
            clash = sorted(k for k in wanted if previous.get(k) != wanted[k])
            if clash:
                raise HsmError(
                    Code.HSM_MODULE_ENV_CONFLICT,
                    f"{path} is already initialised in this process with other values of "
                    f"{', '.join(clash)}; use one module configuration per process",
                )
        else:
            os.environ.update(wanted)
        try:
            lib = pkcs11.lib(path)
        except p11e.PKCS11Error as exc:
            raise HsmError(
                Code.HSM_MODULE_NOT_FOUND, f"cannot load PKCS#11 module {path}: {exc}"
            ) from None
        _loaded_env.setdefault(path, {k: os.environ.get(k, "") for k in wanted})
        return lib


# Observed now and then in the test suite: a node restarting next to running peers gets
# CKR_GENERAL_ERROR from SoftHSM2 while enumerating the tokens of the shared token
# directory (C_GetTokenInfo), and succeeds a moment later. The likely cause is a token
# file being touched by another process; a short bounded retry rides over it, and a
# persistent error is raised as before.
_TOKEN_LOOKUP_ATTEMPTS = 5
_TOKEN_LOOKUP_PAUSE = 0.2


def find_token(config: HsmConfig) -> Token:
    lib = load_module(config)
    try:
        for attempt in range(_TOKEN_LOOKUP_ATTEMPTS):
            try:
                token: Token = lib.get_token(token_label=config.token_label)
                return token
            except p11e.GeneralError:
                if attempt == _TOKEN_LOOKUP_ATTEMPTS - 1:
                    raise
                time.sleep(_TOKEN_LOOKUP_PAUSE)
        raise AssertionError("unreachable")
    except p11e.NoSuchToken:
        raise HsmError(
            Code.HSM_TOKEN_NOT_FOUND,
            f"no token labelled {config.token_label!r} in {lib.so} (initialise it first; "
            "tokens created after this process loaded the module need a restart)",
        ) from None
    except p11e.MultipleTokensReturned:
        raise HsmError(
            Code.HSM_TOKEN_AMBIGUOUS, f"several tokens labelled {config.token_label!r}"
        ) from None


def open_session(config: HsmConfig, *, required: tuple[Mechanism, ...] = ()) -> Session:
    """A read/write session logged in as the token user (``C_OpenSession`` +
    ``C_Login(CKU_USER)``).

    The PIN is read from its source here and handed to the module only. PKCS#11
    login state is per application and token, so if this process is already
    logged in to the token (``CKR_USER_ALREADY_LOGGED_IN``) the new session
    shares that login. ``required`` mechanisms are checked with
    ``C_GetMechanismList`` so a vendor HSM lacking one fails clearly at open.
    """
    pin = config.pin.read()
    token = find_token(config)
    if required:
        available = token.slot.get_mechanisms()
        missing = [m.name for m in required if m not in available]
        if missing:
            raise HsmError(
                Code.HSM_MECHANISM_UNSUPPORTED,
                f"token {config.token_label!r} lacks {', '.join('CKM_' + m for m in missing)}",
            )
    try:
        return token.open(rw=True, user_pin=pin)
    except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
        raise HsmError(
            Code.HSM_PIN_INCORRECT,
            f"PIN from {config.pin.describe()} rejected by token {config.token_label!r}",
        ) from None
    except p11e.PinLocked:
        raise HsmError(
            Code.HSM_PIN_LOCKED,
            f"user PIN of token {config.token_label!r} is locked; the security officer "
            "must reset it",
        ) from None
    except p11e.UserAlreadyLoggedIn:
        return token.open(rw=True)
    except p11e.PKCS11Error as exc:
        raise operation_failed(f"opening token {config.token_label!r}", exc) from None
    finally:
        del pin


def operation_failed(what: str, exc: BaseException) -> HsmError:
    """``HSM_OPERATION_FAILED`` naming the PKCS#11 return value (never data)."""
    return HsmError(Code.HSM_OPERATION_FAILED, f"{what} failed: {type(exc).__name__}")
