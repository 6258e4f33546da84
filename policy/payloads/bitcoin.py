"""Bitcoin Taproot key-path spends: the payload, the BIP341 sighash, and the witness.

Payload format v1 (``docs/payments.md`` "Bitcoin payload"), big-endian framing::

    "CBTX" || u8 version=1 || u8 sighash_type (0x00) || u32 input_index
           || u32 len || unsigned transaction (legacy serialization, no witness)
           || u16 n || n * (u64 amount_sat || u16 len || scriptPubKey)

one prevout per transaction input, in input order. BIP341's signature message commits
to every input's amount and scriptPubKey (``sha_amounts``, ``sha_scriptpubkeys``), which
is why the payload carries them: the node computes the sighash itself and so learns
exactly which outputs the signature authorises.

Sighash: BIP341 "Common signature message" (``SigMsg(hash_type, ext_flag=0)``) and
"Taproot key path spending signature validation" (``hash_TapSighash(0x00 ||
SigMsg)``), implemented in :func:`signature_message` for every hash type so the BIP's
wallet vectors test it; payloads are only ever signed with ``SIGHASH_DEFAULT``: with
``NONE``/``SINGLE``/``ANYONECANPAY`` the signature would not bind the outputs the
policy approved.

What the policy sees (rules of :func:`interpret_bitcoin`):

* every input spends the same P2TR scriptPubKey, the signing key's own output
  (a single-address wallet); when the node passes its public key, that scriptPubKey
  must be ``OP_1 <Q>`` with ``Q`` the BIP341 tweak of the key with an empty merkle root;
* outputs paying back to that same scriptPubKey are change; exactly one other output
  must exist: its address is the ``destination`` and its value the ``amount``;
* the ``amount`` is attributed to input 0 only: the signature for input ``k > 0``
  authorises the same transaction, which is worthless without input 0's, so its
  request claims ``amount = 0`` (velocity sums then count each payment once);
* ``fee`` = inputs - outputs, which must not be negative.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from coincurve import PublicKey, PublicKeyXOnly

from policy.payloads.addresses import address_to_script, p2tr_script, script_to_address
from policy.payloads.chains import Chain
from policy.payloads.errors import PayloadCode, PayloadError, invalid, unsupported
from policy.payloads.interpretation import Interpretation
from policy.request import RequestType

MAGIC = b"CBTX"
PAYLOAD_VERSION = 1
SIGHASH_DEFAULT = 0x00
SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80
VALID_HASH_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83})
MAX_MONEY = 21_000_000 * 100_000_000
P2TR_DUST = 330  # Bitcoin Core's dust threshold for a P2TR output at the default relay fee


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340 ``hash_tag(x) = SHA256(SHA256(tag) || SHA256(tag) || x)``."""
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# -- transaction (de)serialisation --------------------------------------------------


def compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise invalid("truncated", self.what)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, order: str = "little") -> int:
        return int.from_bytes(self.take(n), order)  # type: ignore[arg-type]

    def compact(self) -> int:
        first = self.uint(1)
        if first < 0xFD:
            return first
        width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        n = self.uint(width)
        if n < {2: 0xFD, 4: 0x10000, 8: 0x100000000}[width]:
            raise invalid("non-canonical CompactSize", self.what)
        return n

    def var_bytes(self) -> bytes:
        return self.take(self.compact())

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise invalid("trailing bytes", self.what)


@dataclass(frozen=True, slots=True)
class OutPoint:
    txid: bytes
    """32 bytes in internal byte order (the reverse of the hex shown by explorers)."""
    vout: int

    @classmethod
    def from_hex(cls, txid_hex: str, vout: int) -> OutPoint:
        return cls(bytes.fromhex(txid_hex)[::-1], vout)

    def serialize(self) -> bytes:
        return self.txid + self.vout.to_bytes(4, "little")


@dataclass(frozen=True, slots=True)
class TxIn:
    prevout: OutPoint
    sequence: int = 0xFFFFFFFD
    script_sig: bytes = b""

    def serialize(self) -> bytes:
        return (
            self.prevout.serialize()
            + compact_size(len(self.script_sig))
            + self.script_sig
            + self.sequence.to_bytes(4, "little")
        )


@dataclass(frozen=True, slots=True)
class TxOut:
    value: int
    script_pubkey: bytes

    def serialize(self) -> bytes:
        return (
            self.value.to_bytes(8, "little")
            + compact_size(len(self.script_pubkey))
            + (self.script_pubkey)
        )


@dataclass(frozen=True, slots=True)
class Transaction:
    version: int
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    locktime: int = 0

    def serialize(self, witnesses: Sequence[Sequence[bytes]] | None = None) -> bytes:
        """Legacy serialization, or BIP144 with ``witnesses`` (one stack per input)."""
        body = (
            compact_size(len(self.inputs))
            + b"".join(i.serialize() for i in self.inputs)
            + compact_size(len(self.outputs))
            + b"".join(o.serialize() for o in self.outputs)
        )
        version = self.version.to_bytes(4, "little")
        locktime = self.locktime.to_bytes(4, "little")
        if witnesses is None:
            return version + body + locktime
        if len(witnesses) != len(self.inputs):
            raise invalid("one witness stack per input")
        wit = b"".join(
            compact_size(len(stack)) + b"".join(compact_size(len(x)) + x for x in stack)
            for stack in witnesses
        )
        return version + b"\x00\x01" + body + wit + locktime

    def txid(self) -> str:
        """The transaction id in the usual (byte-reversed) hex."""
        return _sha256(_sha256(self.serialize()))[::-1].hex()

    @classmethod
    def parse(cls, raw: bytes) -> Transaction:
        """Strict parse of a legacy-serialised (witness-free) transaction."""
        r = _Reader(raw, "transaction")
        version = r.uint(4)
        n_in = r.compact()
        if n_in == 0:
            raise invalid(
                "no inputs (or a witness serialization, which is not accepted)", "transaction"
            )
        inputs = []
        for _ in range(n_in):
            prevout = OutPoint(r.take(32), r.uint(4))
            script_sig = r.var_bytes()
            inputs.append(TxIn(prevout, r.uint(4), script_sig))
        n_out = r.compact()
        if n_out == 0:
            raise invalid("no outputs", "transaction")
        outputs = [TxOut(r.uint(8), r.var_bytes()) for _ in range(n_out)]
        locktime = r.uint(4)
        r.finish()
        tx = cls(version, tuple(inputs), tuple(outputs), locktime)
        if (
            any(o.value > MAX_MONEY for o in tx.outputs)
            or sum(o.value for o in tx.outputs) > MAX_MONEY
        ):
            raise invalid("output value above MAX_MONEY", "outputs")
        return tx


# -- BIP341 signature message -------------------------------------------------------


def signature_message(
    tx: Transaction,
    prevouts: Sequence[TxOut],
    input_index: int,
    hash_type: int = SIGHASH_DEFAULT,
    annex: bytes | None = None,
) -> bytes:
    """BIP341 "Common signature message" ``SigMsg(hash_type, 0)`` for a key-path spend."""
    if hash_type not in VALID_HASH_TYPES:
        raise invalid(f"hash type {hash_type:#x} is not defined by BIP341", "sighash_type")
    if len(prevouts) != len(tx.inputs) or not 0 <= input_index < len(tx.inputs):
        raise invalid("one prevout per input and an input index in range")
    output_type = SIGHASH_ALL if hash_type == SIGHASH_DEFAULT else hash_type & 3
    anyone_can_pay = bool(hash_type & SIGHASH_ANYONECANPAY)
    m = bytes([hash_type]) + tx.version.to_bytes(4, "little") + tx.locktime.to_bytes(4, "little")
    if not anyone_can_pay:
        m += _sha256(b"".join(i.prevout.serialize() for i in tx.inputs))  # sha_prevouts
        m += _sha256(b"".join(p.value.to_bytes(8, "little") for p in prevouts))  # sha_amounts
        m += _sha256(
            b"".join(compact_size(len(p.script_pubkey)) + p.script_pubkey for p in prevouts)
        )  # sha_scriptpubkeys
        m += _sha256(b"".join(i.sequence.to_bytes(4, "little") for i in tx.inputs))
    if output_type not in (SIGHASH_NONE, SIGHASH_SINGLE):
        m += _sha256(b"".join(o.serialize() for o in tx.outputs))  # sha_outputs
    m += bytes([0 + (annex is not None)])  # spend_type = ext_flag * 2 + annex_present
    if anyone_can_pay:
        txin, prev = tx.inputs[input_index], prevouts[input_index]
        m += txin.prevout.serialize() + prev.value.to_bytes(8, "little")
        m += compact_size(len(prev.script_pubkey)) + prev.script_pubkey
        m += txin.sequence.to_bytes(4, "little")
    else:
        m += input_index.to_bytes(4, "little")
    if annex is not None:
        m += _sha256(compact_size(len(annex)) + annex)
    if output_type == SIGHASH_SINGLE:
        if input_index >= len(tx.outputs):
            raise invalid("SIGHASH_SINGLE without a matching output")
        m += _sha256(tx.outputs[input_index].serialize())
    return m


def taproot_sighash(
    tx: Transaction,
    prevouts: Sequence[TxOut],
    input_index: int,
    hash_type: int = SIGHASH_DEFAULT,
    annex: bytes | None = None,
) -> bytes:
    """BIP341 ``hash_TapSighash(0x00 || SigMsg(hash_type, 0))`` (epoch 0)."""
    return tagged_hash(
        "TapSighash", b"\x00" + signature_message(tx, prevouts, input_index, hash_type, annex)
    )


def taproot_output_key(internal_key: bytes, merkle_root: bytes = b"") -> bytes:
    """BIP341 ``taproot_tweak_pubkey``: x(P + hash_TapTweak(x(P) || root) * G).

    ``internal_key``: 32-byte x-only or 33-byte compressed (its y parity is dropped,
    as BIP341 keys are x-only)."""
    if len(internal_key) == 33:
        internal_key = internal_key[1:]
    if len(internal_key) != 32:
        raise PayloadError(
            PayloadCode.KEY_SCHEME_MISMATCH, "not a secp256k1 public key", field="public_key"
        )
    tweak = tagged_hash("TapTweak", internal_key + merkle_root)
    try:
        key = PublicKeyXOnly(internal_key)
        key.tweak_add(tweak)
    except ValueError:
        raise PayloadError(
            PayloadCode.KEY_SCHEME_MISMATCH, "not a valid x-only key", field="public_key"
        ) from None
    return bytes(key.format())


# -- the payload --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaprootSpend:
    """An unsigned transaction and the outputs its inputs spend: one payload per input."""

    tx: Transaction
    prevouts: tuple[TxOut, ...]

    def payload(self, input_index: int) -> bytes:
        if not 0 <= input_index < len(self.tx.inputs):
            raise invalid("input index out of range", "input_index")
        raw = self.tx.serialize()
        out = bytearray(MAGIC + bytes([PAYLOAD_VERSION, SIGHASH_DEFAULT]))
        out += input_index.to_bytes(4, "big") + len(raw).to_bytes(4, "big") + raw
        out += len(self.prevouts).to_bytes(2, "big")
        for p in self.prevouts:
            out += p.value.to_bytes(8, "big") + len(p.script_pubkey).to_bytes(2, "big")
            out += p.script_pubkey
        return bytes(out)

    def payloads(self) -> list[bytes]:
        return [self.payload(i) for i in range(len(self.tx.inputs))]

    def sighash(self, input_index: int) -> bytes:
        return taproot_sighash(self.tx, self.prevouts, input_index)


def decode_payload(payload: bytes) -> tuple[TaprootSpend, int]:
    """Parse a v1 payload: (spend, input index). ``PAYLOAD_INVALID`` on any deviation."""
    r = _Reader(payload, "payload")
    if r.take(4) != MAGIC:
        raise invalid("not a Bitcoin payload (magic CBTX)")
    if r.uint(1) != PAYLOAD_VERSION:
        raise invalid("unsupported payload version", "version")
    hash_type = r.uint(1)
    if hash_type != SIGHASH_DEFAULT:
        raise unsupported("only SIGHASH_DEFAULT is signed", "sighash_type")
    index = r.uint(4, "big")
    tx = Transaction.parse(r.take(r.uint(4, "big")))
    prevouts = []
    for _ in range(r.uint(2, "big")):
        value = r.uint(8, "big")
        prevouts.append(TxOut(value, r.take(r.uint(2, "big"))))
    r.finish()
    if len(prevouts) != len(tx.inputs):
        raise invalid("one prevout per input", "prevouts")
    if not index < len(tx.inputs):
        raise invalid("input index out of range", "input_index")
    if any(p.value > MAX_MONEY for p in prevouts) or sum(p.value for p in prevouts) > MAX_MONEY:
        raise invalid("prevout amount above MAX_MONEY", "prevouts")
    return TaprootSpend(tx, tuple(prevouts)), index


def interpret_bitcoin(
    chain: Chain, payload: bytes, signer_key: bytes | None = None
) -> Interpretation:
    """What a Taproot key-path payload does (rules in the module docstring)."""
    spend, index = decode_payload(payload)
    own = spend.prevouts[index].script_pubkey
    if len(own) != 34 or own[:2] != b"\x51\x20":
        raise PayloadError(
            PayloadCode.KEY_SCHEME_MISMATCH, "the spent output is not P2TR", field="prevouts"
        )
    if signer_key is not None and p2tr_script(taproot_output_key(signer_key)) != own:
        raise PayloadError(
            PayloadCode.KEY_SCHEME_MISMATCH,
            "the spent output does not belong to the signing key",
            field="prevouts",
        )
    if any(p.script_pubkey != own for p in spend.prevouts):
        raise unsupported("every input must spend the signing key's own output", "prevouts")
    if any(i.script_sig for i in spend.tx.inputs):
        raise invalid("Taproot inputs have an empty scriptSig", "transaction")
    fee = sum(p.value for p in spend.prevouts) - sum(o.value for o in spend.tx.outputs)
    if fee < 0:
        raise invalid("outputs exceed inputs", "outputs")
    paid = [o for o in spend.tx.outputs if o.script_pubkey != own]
    if len(paid) != 1:
        raise unsupported(
            f"exactly one non-change output is signed, this has {len(paid)}", "outputs"
        )
    return Interpretation(
        request_type=RequestType.TRANSFER,
        chain=chain.name,
        asset=chain.native_asset,
        destination=script_to_address(chain, paid[0].script_pubkey),
        amount=paid[0].value if index == 0 else 0,
        digest=spend.sighash(index),
        signing="schnorr",
        taproot_merkle_root=b"",
        fee=fee,
        fee_asset=chain.native_asset,
    )


# -- building and assembling --------------------------------------------------------


def key_path_vsize(n_inputs: int, output_scripts: Sequence[bytes]) -> int:
    """Virtual size (BIP141: ceil(weight / 4)) of a transaction spending ``n_inputs``
    P2TR outputs by key path with SIGHASH_DEFAULT (64-byte signatures)."""
    base = 4 + len(compact_size(n_inputs)) + n_inputs * (32 + 4 + 1 + 4)
    base += len(compact_size(len(output_scripts)))
    base += sum(8 + len(compact_size(len(s))) + len(s) for s in output_scripts) + 4
    witness = 2 + n_inputs * (1 + 1 + 64)  # marker, flag; per input: 1 item of 64 bytes
    return (4 * base + witness + 3) // 4


def build_p2tr_spend(
    chain: Chain,
    *,
    utxos: Sequence[tuple[OutPoint, int]],
    own_script: bytes,
    destination: str,
    amount: int,
    fee_rate: int,
    sequence: int = 0xFFFFFFFD,
    locktime: int = 0,
) -> TaprootSpend:
    """A key-path spend of ``utxos`` (all paying ``own_script``) sending ``amount`` to
    ``destination``, with a change output back to ``own_script`` unless the change would
    be dust (it then goes to the fee). ``fee_rate`` is in sat/vB. Raises
    ``PAYLOAD_INVALID`` when the inputs do not cover amount + fee."""
    if not utxos:
        raise invalid("no inputs", "utxos")
    if not 0 < amount <= MAX_MONEY or fee_rate < 0:
        raise invalid("amount in (0, MAX_MONEY], fee rate >= 0", "amount")
    dest_script = address_to_script(chain, destination)
    if dest_script == own_script:
        raise unsupported("a payment to the wallet's own address is not a withdrawal")
    total = sum(v for _, v in utxos)
    inputs = tuple(TxIn(op, sequence) for op, _ in utxos)
    prevouts = tuple(TxOut(v, own_script) for _, v in utxos)
    with_change = fee_rate * key_path_vsize(len(inputs), [dest_script, own_script])
    change = total - amount - with_change
    outputs: tuple[TxOut, ...]
    if change >= P2TR_DUST:
        outputs = (TxOut(amount, dest_script), TxOut(change, own_script))
    else:
        fee = fee_rate * key_path_vsize(len(inputs), [dest_script])
        if total - amount < fee:
            raise invalid("inputs do not cover amount and fee", "utxos")
        outputs = (TxOut(amount, dest_script),)
    return TaprootSpend(Transaction(2, inputs, outputs, locktime), prevouts)


def assemble_witness(payload: bytes, signatures: Sequence[bytes]) -> bytes:
    """The signed transaction (BIP144 serialization): input ``i``'s witness is the
    single 64-byte BIP340 signature ``signatures[i]`` (SIGHASH_DEFAULT: no hash-type
    byte, BIP341 "Signature validation rules"). Every signature is verified against its
    input's sighash and output key first (libsecp256k1), so nothing unspendable leaves."""
    spend, _ = decode_payload(payload)
    if len(signatures) != len(spend.tx.inputs):
        raise invalid("one signature per input", "signatures")
    for i, sig in enumerate(signatures):
        script = spend.prevouts[i].script_pubkey
        if len(script) != 34 or script[:2] != b"\x51\x20":
            raise unsupported("only P2TR inputs are signed", "prevouts")
        if len(sig) != 64 or not PublicKeyXOnly(script[2:]).verify(sig, spend.sighash(i)):
            raise invalid(f"signature {i} does not verify for its input", "signatures")
    return spend.tx.serialize([[sig] for sig in signatures])


def p2tr_address(chain: Chain, internal_key: bytes) -> str:
    """The key-path-only P2TR address of a key (BIP341 tweak with an empty merkle root,
    BIP86 style); ``internal_key`` is x-only or compressed."""
    return script_to_address(chain, p2tr_script(taproot_output_key(internal_key)))


def x_only(public_key: bytes) -> bytes:
    """The x-only form (BIP340) of a 33-byte compressed or 32-byte key."""
    if len(public_key) == 32:
        return public_key
    return bytes(PublicKey(public_key).format(compressed=True)[1:])
