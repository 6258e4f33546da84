"""Bitcoin addresses <-> output scripts: segwit (BIP173 bech32, BIP350 bech32m) and
legacy base58check P2PKH/P2SH.

The bech32 functions follow the reference implementation of BIP350 ("Reference
implementation", ``segwit_addr.py``) line for line: checksum constants 1 (bech32) and
0x2bc830a3 (bech32m); witness version 0 must use bech32 with a 20- or 32-byte program,
versions 1-16 bech32m with 2-40 bytes. Addresses are produced in lowercase, the
canonical form policies compare against.
"""

from __future__ import annotations

import hashlib
from enum import Enum

from policy.payloads.chains import Chain
from policy.payloads.errors import PayloadError, invalid, unsupported

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32M_CONST = 0x2BC830A3
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class Encoding(Enum):
    BECH32 = 1
    BECH32M = 2


def _polymod(values: list[int]) -> int:
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if ((top >> i) & 1) else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def _create_checksum(hrp: str, data: list[int], spec: Encoding) -> list[int]:
    const = BECH32M_CONST if spec is Encoding.BECH32M else 1
    polymod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ const
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]


def _bech32_decode(bech: str) -> tuple[str, list[int], Encoding] | None:
    if any(ord(x) < 33 or ord(x) > 126 for x in bech) or (
        bech.lower() != bech and bech.upper() != bech
    ):
        return None
    bech = bech.lower()
    pos = bech.rfind("1")
    if pos < 1 or pos + 7 > len(bech) or len(bech) > 90:
        return None
    if not all(x in CHARSET for x in bech[pos + 1 :]):
        return None
    hrp = bech[:pos]
    data = [CHARSET.find(x) for x in bech[pos + 1 :]]
    const = _polymod(_hrp_expand(hrp) + data)
    spec = {1: Encoding.BECH32, BECH32M_CONST: Encoding.BECH32M}.get(const)
    if spec is None:
        return None
    return hrp, data[:-6], spec


def _convertbits(
    data: bytes | list[int], frombits: int, tobits: int, pad: bool
) -> list[int] | None:
    acc = 0
    bits = 0
    ret = []
    maxv = (1 << tobits) - 1
    max_acc = (1 << (frombits + tobits - 1)) - 1
    for value in data:
        if value < 0 or (value >> frombits):
            return None
        acc = ((acc << frombits) | value) & max_acc
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return ret


def decode_segwit(hrp: str, addr: str) -> tuple[int, bytes] | None:
    """(witness version, program) or ``None`` (BIP350 ``decode``)."""
    got = _bech32_decode(addr)
    if got is None or got[0] != hrp or not got[1]:
        return None
    _, data, spec = got
    decoded = _convertbits(data[1:], 5, 8, False)
    if decoded is None or len(decoded) < 2 or len(decoded) > 40:
        return None
    if data[0] > 16:
        return None
    if data[0] == 0 and len(decoded) not in (20, 32):
        return None
    if (data[0] == 0) != (spec is Encoding.BECH32):
        return None
    return data[0], bytes(decoded)


def encode_segwit(hrp: str, version: int, program: bytes) -> str:
    """BIP350 ``encode``: bech32 for version 0, bech32m for 1-16."""
    spec = Encoding.BECH32 if version == 0 else Encoding.BECH32M
    bits = _convertbits(program, 8, 5, True)
    assert bits is not None
    data = [version, *bits]
    ret = hrp + "1" + "".join(CHARSET[d] for d in data + _create_checksum(hrp, data, spec))
    if decode_segwit(hrp, ret) is None:
        raise invalid("not an encodable witness program", "destination")
    return ret


def _b58check_encode(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _b58check_decode(text: str) -> bytes | None:
    n = 0
    for c in text:
        i = _B58.find(c)
        if i < 0:
            return None
        n = n * 58 + i
    zeros = len(text) - len(text.lstrip("1"))
    raw = b"\0" * zeros + (n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b"")
    if len(raw) < 5:
        return None
    body, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4] != check:
        return None
    return body


def witness_script(version: int, program: bytes) -> bytes:
    """``OP_n <program>`` (BIP141 "Witness program")."""
    return bytes([0x50 + version if version else 0, len(program)]) + program


def p2tr_script(output_key_x: bytes) -> bytes:
    """``OP_1 <32-byte x-only output key>`` (BIP341 "Script validation rules")."""
    if len(output_key_x) != 32:
        raise invalid("a Taproot output key is 32 bytes")
    return witness_script(1, output_key_x)


def script_to_address(chain: Chain, script: bytes) -> str:
    """The canonical address of an output script; ``PAYLOAD_UNSUPPORTED`` for scripts
    without one (bare multisig, OP_RETURN...)."""
    n = len(script)
    if 4 <= n <= 42 and (script[0] == 0 or 0x51 <= script[0] <= 0x60) and script[1] == n - 2:
        version = 0 if script[0] == 0 else script[0] - 0x50
        try:
            return encode_segwit(chain.hrp, version, script[2:])
        except PayloadError:  # e.g. a v0 program of neither 20 nor 32 bytes
            raise unsupported("witness program has no address", "outputs") from None
    if n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return _b58check_encode(bytes([chain.base58_p2pkh]) + script[3:23])
    if n == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return _b58check_encode(bytes([chain.base58_p2sh]) + script[2:22])
    raise unsupported("output script has no standard address", "outputs")


def address_to_script(chain: Chain, address: str) -> bytes:
    """The output script an address pays to (``PAYLOAD_INVALID`` if it is not an
    address of ``chain``)."""
    segwit = decode_segwit(chain.hrp, address)
    if segwit is not None:
        return witness_script(*segwit)
    body = _b58check_decode(address)
    if body is not None and len(body) == 21:
        if body[0] == chain.base58_p2pkh:
            return b"\x76\xa9\x14" + body[1:] + b"\x88\xac"
        if body[0] == chain.base58_p2sh:
            return b"\xa9\x14" + body[1:] + b"\x87"
    raise invalid(f"not a {chain.name} address", "destination")
