"""The wire format of a signed policy version (``SignedPolicyVersion``), version 1.

The coordinator pushes this bundle to every signer node once officers reached quorum
(``docs/policy-format.md`` §6, ``docs/governance.md`` "Bundle"); the node decodes it and
runs :func:`policy.governance.verify_and_activate` against its own chain. The encoding uses
the framing of ``policy._codec`` (§1 of the policy format)::

    bundle = tag("policy-bundle") || u8(1) || u64(number) || parent_hash (32 bytes)
             || lp(document) || u32(k) || k x (lp(officer id) || signature (64 bytes))

Signatures appear in strictly increasing officer-id order (byte order of the UTF-8 ids),
so one signed version has exactly one encoding and an officer appears at most once.
Decoding is strict: wrong tag or version, out-of-range fields, trailing bytes, unsorted or
duplicate officers are all ``POLICY_BUNDLE_MALFORMED``. Decoding checks form only; whether
the signatures count is for :func:`~policy.governance.verify_and_activate`.
"""

from __future__ import annotations

from itertools import pairwise

from policy._codec import lp, tag, u8, u64
from policy.document import MAX_DOCUMENT_BYTES
from policy.governance import OfficerSignature, PolicyVersion, SignedPolicyVersion

BUNDLE_FORMAT_VERSION = 1
MAX_SIGNATURES = 255
_TAG = tag("policy-bundle")
BUNDLE_MALFORMED = "POLICY_BUNDLE_MALFORMED"


class BundleError(ValueError):
    """A byte string is not a well-formed v1 bundle; ``code`` is ``POLICY_BUNDLE_MALFORMED``."""

    code = BUNDLE_MALFORMED

    def __init__(self, message: str) -> None:
        super().__init__(f"{BUNDLE_MALFORMED}: {message}")


def _sorted_signatures(sigs: tuple[OfficerSignature, ...]) -> list[OfficerSignature]:
    out = sorted(sigs, key=lambda s: s.officer.encode())
    for a, b in pairwise(out):
        if a.officer == b.officer:
            raise ValueError(f"officer {a.officer!r} signs twice")
    return out


def encode_bundle(signed: SignedPolicyVersion) -> bytes:
    """The canonical bytes of ``signed`` (signatures sorted by officer id)."""
    sigs = _sorted_signatures(signed.signatures)
    if len(sigs) > MAX_SIGNATURES:
        raise ValueError(f"at most {MAX_SIGNATURES} signatures")
    if len(signed.version.document) > MAX_DOCUMENT_BYTES:
        raise ValueError("document larger than the policy format allows")
    v = signed.version
    parts = [
        _TAG,
        u8(BUNDLE_FORMAT_VERSION),
        u64(v.number),
        v.parent_hash,
        lp(v.document),
        len(sigs).to_bytes(4, "big"),
    ]
    for s in sigs:
        parts.append(lp(s.officer.encode("utf-8")))
        parts.append(s.signature)
    return b"".join(parts)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise BundleError(f"truncated in {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def lp(self, what: str, limit: int) -> bytes:
        n = self.uint(4, what)
        if n > limit:
            raise BundleError(f"{what} longer than {limit} bytes")
        return self.take(n, what)


def decode_bundle(data: bytes) -> SignedPolicyVersion:
    """Parse :func:`encode_bundle` output; raise :class:`BundleError` on any deviation."""
    if not isinstance(data, bytes):
        raise BundleError("expected bytes")
    r = _Reader(data)
    if r.take(len(_TAG), "tag") != _TAG:
        raise BundleError("not a policy bundle (tag)")
    if r.uint(1, "format version") != BUNDLE_FORMAT_VERSION:
        raise BundleError("unsupported bundle format version")
    number = r.uint(8, "number")
    parent = r.take(32, "parent hash")
    document = r.lp("document", MAX_DOCUMENT_BYTES)
    count = r.uint(4, "signature count")
    if count > MAX_SIGNATURES:
        raise BundleError(f"more than {MAX_SIGNATURES} signatures")
    sigs: list[OfficerSignature] = []
    previous = b""
    for i in range(count):
        raw_id = r.lp(f"officer {i}", 128)
        if sigs and raw_id <= previous:
            raise BundleError("signatures are not in strictly increasing officer order")
        previous = raw_id
        signature = r.take(64, f"signature {i}")
        try:
            sigs.append(OfficerSignature(raw_id.decode("utf-8"), signature))
        except (UnicodeDecodeError, ValueError):
            raise BundleError(f"officer {i}: not a valid identifier") from None
    if r.pos != len(data):
        raise BundleError("trailing bytes")
    try:
        version = PolicyVersion(number, parent, document)
    except ValueError as e:
        raise BundleError(str(e)) from None
    return SignedPolicyVersion(version, tuple(sigs))
