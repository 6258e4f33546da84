"""Ethereum EIP-1559 (type-2) transactions: decode, build, and assemble when signed.

Payload (what initiators send and nodes interpret) = the unsigned typed transaction
of EIP-1559 section "Specification" / EIP-2718::

    0x02 || rlp([chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas,
                 gas_limit, destination, amount, data, access_list])

The digest a node signs is ``keccak256(payload)`` (EIP-1559: "The signature_y_parity,
signature_r, signature_s elements of this transaction represent a secp256k1 signature
over keccak256(0x02 || rlp([...]))"). The signed transaction appends
``y_parity, r, s`` to the list (:func:`assemble_signed`).

Decoding is strict: RLP must be canonical (the payload re-encodes to the same bytes),
integers fit their EVM widths, ``to`` is 20 bytes. What the policy sees:

* ``data`` empty: a ``transfer`` of the chain's native asset to ``to`` of ``value`` wei;
* ``to`` is the ERC-20 contract registered for an asset of the chain
  (:mod:`policy.payloads.chains`), ``value`` is 0 and ``data`` is exactly
  ``transfer(address,uint256)`` (selector ``0xa9059cbb``, ABI-encoded with clean
  padding): a ``transfer`` of that asset to the decoded recipient of the decoded amount;
* anything else: a ``contract_call`` of the native asset to ``to`` (the contract)
  with ``value`` wei. Contract creation (empty ``to``) is not signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import rlp
from coincurve import PublicKey
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from rlp.sedes import Binary, CountableList, List, big_endian_int, binary

from policy.payloads.chains import Chain
from policy.payloads.errors import PayloadCode, PayloadError, invalid, unsupported
from policy.payloads.interpretation import Interpretation
from policy.request import RequestType

TX_TYPE = 0x02
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ERC20_TRANSFER = bytes.fromhex("a9059cbb")
U256 = 1 << 256
U64 = 1 << 64

_ADDRESS = Binary.fixed_length(20)
_ACCESS_LIST = CountableList(List([_ADDRESS, CountableList(Binary.fixed_length(32))]))
_UNSIGNED_FIELDS = [
    big_endian_int,  # chain_id
    big_endian_int,  # nonce
    big_endian_int,  # max_priority_fee_per_gas
    big_endian_int,  # max_fee_per_gas
    big_endian_int,  # gas_limit
    Binary(min_length=0, max_length=20, allow_empty=True),  # destination (or empty)
    big_endian_int,  # amount (value)
    binary,  # data
    _ACCESS_LIST,
]
_UNSIGNED = List(_UNSIGNED_FIELDS)
_SIGNED = List([*_UNSIGNED_FIELDS, big_endian_int, big_endian_int, big_endian_int])

AccessList = tuple[tuple[bytes, tuple[bytes, ...]], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Eip1559Transaction:
    """The fields of an unsigned type-2 transaction, validated on construction."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes
    value: int
    data: bytes = b""
    access_list: AccessList = ()

    def __post_init__(self) -> None:
        for name, limit in (
            ("chain_id", U256),
            ("nonce", U64 - 1),  # EIP-2681: nonce < 2^64 - 1
            ("max_priority_fee_per_gas", U256),
            ("max_fee_per_gas", U256),
            ("gas", U64),
            ("value", U256),
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < limit:
                raise invalid("integer out of range", name)
        if self.chain_id == 0:
            raise invalid("chain id 0 is not a network", "chain_id")
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            # EIP-1559 validity: "assert transaction.max_fee_per_gas >= transaction.max_priority_fee_per_gas"
            raise invalid("max priority fee exceeds max fee", "max_priority_fee_per_gas")
        if len(self.to) not in (0, 20):
            raise invalid("an address is 20 bytes", "to")
        for address, keys in self.access_list:
            if len(address) != 20 or any(len(k) != 32 for k in keys):
                raise invalid("access list entries are (20-byte address, 32-byte keys)")

    def encode(self) -> bytes:
        """The unsigned typed transaction: the payload."""
        return bytes([TX_TYPE]) + bytes(rlp.encode(self._fields(), _UNSIGNED))

    def _fields(self) -> list[object]:
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            self.to,
            self.value,
            self.data,
            [[a, list(k)] for a, k in self.access_list],
        ]

    def signing_hash(self) -> bytes:
        return bytes(keccak(self.encode()))

    @property
    def max_fee(self) -> int:
        """The most this transaction can pay for gas, in wei."""
        return self.gas * self.max_fee_per_gas


def decode_eip1559(payload: bytes) -> Eip1559Transaction:
    """Strictly parse an unsigned type-2 transaction (``PAYLOAD_INVALID`` otherwise)."""
    if not payload or payload[0] != TX_TYPE:
        raise invalid("not an EIP-2718 type-2 transaction (first byte must be 0x02)")
    try:
        fields = rlp.decode(payload[1:], _UNSIGNED, strict=True)
    except (rlp.DecodingError, rlp.DeserializationError) as exc:
        raise invalid(f"not a canonical RLP list of the 9 EIP-1559 fields ({exc})") from None
    tx = Eip1559Transaction(
        chain_id=fields[0],
        nonce=fields[1],
        max_priority_fee_per_gas=fields[2],
        max_fee_per_gas=fields[3],
        gas=fields[4],
        to=bytes(fields[5]),
        value=fields[6],
        data=bytes(fields[7]),
        access_list=tuple((bytes(a), tuple(bytes(k) for k in ks)) for a, ks in fields[8]),
    )
    if tx.encode() != payload:
        raise invalid("RLP is not canonical")
    return tx


def build_eip1559(
    *,
    chain_id: int,
    nonce: int,
    to: str | bytes,
    value: int,
    gas: int = 21_000,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
    data: bytes = b"",
    access_list: AccessList = (),
) -> bytes:
    """The payload (unsigned typed transaction) for the given fields."""
    return Eip1559Transaction(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=max_priority_fee_per_gas,
        max_fee_per_gas=max_fee_per_gas,
        gas=gas,
        to=parse_address(to) if isinstance(to, str) else to,
        value=value,
        data=data,
        access_list=access_list,
    ).encode()


def erc20_transfer_data(recipient: str | bytes, amount: int) -> bytes:
    """ABI-encoded ``transfer(address,uint256)`` call data."""
    addr = parse_address(recipient) if isinstance(recipient, str) else recipient
    if len(addr) != 20 or not 0 <= amount < U256:
        raise invalid("bad ERC-20 recipient or amount")
    return ERC20_TRANSFER + bytes(12) + addr + amount.to_bytes(32, "big")


def assemble_signed(payload: bytes, r: int, s: int, recovery_id: int) -> bytes:
    """The raw signed transaction ``0x02 || rlp([..., y_parity, r, s])``.

    ``recovery_id`` is the parity of R's y (0/1), which is EIP-1559's
    ``signature_y_parity``; ``s`` must be low (EIP-2).
    """
    tx = decode_eip1559(payload)
    if recovery_id not in (0, 1):
        raise invalid("recovery id must be 0 or 1", "recovery_id")
    if not (0 < r < SECP256K1_ORDER and 0 < s <= SECP256K1_ORDER // 2):
        raise invalid("not a low-s secp256k1 signature", "signature")
    return bytes([TX_TYPE]) + bytes(rlp.encode([*tx._fields(), recovery_id, r, s], _SIGNED))


def parse_address(text: str) -> bytes:
    """``0x`` + 40 hex digits -> 20 bytes. Mixed case must be a valid EIP-55 checksum."""
    if not isinstance(text, str) or len(text) != 42 or text[:2] != "0x":
        raise invalid("an Ethereum address is 0x followed by 40 hex digits", "destination")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise invalid("not hex", "destination") from None
    body = text[2:]
    if body != body.lower() and body != body.upper() and to_checksum_address(raw) != text:
        raise invalid("EIP-55 checksum mismatch", "destination")
    return raw


def checksum(address: bytes) -> str:
    """EIP-55 mixed-case form of a 20-byte address."""
    return str(to_checksum_address(address))


def address_of(public_key: bytes) -> str:
    """EIP-55 address of a secp256k1 key (33-byte compressed or 65-byte uncompressed):
    the last 20 bytes of ``keccak256(X || Y)`` (Yellow Paper, appendix F)."""
    try:
        uncompressed = PublicKey(public_key).format(compressed=False)
    except (ValueError, TypeError):
        raise PayloadError(
            PayloadCode.KEY_SCHEME_MISMATCH, "not a secp256k1 public key", field="public_key"
        ) from None
    return checksum(bytes(keccak(uncompressed[1:]))[12:])


def _token_of(chain: Chain, contract: bytes) -> str | None:
    hex_addr = "0x" + contract.hex()
    for asset, address in chain.tokens.items():
        if address == hex_addr:
            return asset
    return None


def interpret_ethereum(chain: Chain, payload: bytes) -> Interpretation:
    """What an EIP-1559 payload does (see the module docstring for the rules)."""
    tx = decode_eip1559(payload)
    if tx.chain_id != chain.eip155_chain_id:
        raise PayloadError(
            PayloadCode.CHAIN_MISMATCH,
            f"transaction is for chain id {tx.chain_id}, {chain.name} is {chain.eip155_chain_id}",
            field="chain_id",
        )
    if not tx.to:
        raise unsupported("contract creation is not signed", "to")
    common = {
        "chain": chain.name,
        "digest": tx.signing_hash(),
        "signing": "ecdsa",
        "fee": tx.max_fee,
        "fee_asset": chain.native_asset,
    }
    token = _token_of(chain, tx.to)
    if token is not None and tx.data[:4] == ERC20_TRANSFER and tx.value == 0:
        recipient, amount = _decode_erc20_transfer(tx.data)
        return Interpretation(
            request_type=RequestType.TRANSFER,
            asset=token,
            destination=checksum(recipient),
            amount=amount,
            **common,  # type: ignore[arg-type]
        )
    return Interpretation(
        request_type=RequestType.TRANSFER if not tx.data else RequestType.CONTRACT_CALL,
        asset=chain.native_asset,
        destination=checksum(tx.to),
        amount=tx.value,
        **common,  # type: ignore[arg-type]
    )


def _decode_erc20_transfer(data: bytes) -> tuple[bytes, int]:
    """``transfer(address to, uint256 amount)`` per the Solidity ABI specification:
    two 32-byte words; the address word's upper 12 bytes must be zero."""
    if len(data) != 4 + 64 or any(data[4:16]):
        raise invalid("ERC-20 transfer call data is not canonically ABI-encoded", "data")
    return data[16:36], int.from_bytes(data[36:68], "big")


def destinations_equal(claimed: str, decoded: str) -> bool:
    """Ethereum addresses compare case-insensitively (EIP-55 only changes case), but a
    mixed-case claim must carry a valid checksum."""
    try:
        return parse_address(claimed) == parse_address(decoded)
    except PayloadError:
        return False


__all__: Sequence[str] = (
    "Eip1559Transaction",
    "address_of",
    "assemble_signed",
    "build_eip1559",
    "decode_eip1559",
    "erc20_transfer_data",
    "interpret_ethereum",
    "parse_address",
)
