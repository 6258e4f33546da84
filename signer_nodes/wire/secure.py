"""Sealing protocol envelopes for relay through the untrusted coordinator.

Point-to-point payloads are encrypted to the recipient with HPKE (RFC 9180,
base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, from
``cryptography``). The HPKE ``info`` binds the session id, protocol, round,
sender and recipient, so a ciphertext cannot be replayed under another header.
Every envelope, ciphertext included, is then signed with the sender's Ed25519
identity key over a domain-separated encoding of all its fields.

So the coordinator, which relays everything (ARCHITECTURE section 1), can
drop or reorder messages but cannot read point-to-point payloads, alter any
message, or speak for a node. What it can still do, show different
broadcasts to different nodes, is caught by the protocols' echo checks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError, InvalidMessageError, RemoteProtocolError
from signer_nodes.mpc.session import Envelope
from signer_nodes.wire.identity import NodeDirectory, NodeIdentity

HPKE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_SIGN_DOMAIN = b"mpc-custody/envelope-signature/v1\x00"
_INFO_DOMAIN = b"mpc-custody/envelope-encryption/v1\x00"


class EnvelopeAuthenticationError(RemoteProtocolError):
    """The envelope's signature is not the claimed sender's. Whoever relayed
    it (or the sender) tampered with it; ``culprits`` is the claimed sender
    only as a suspect, since the relay may have forged the sender field."""

    code = "BAD_ENVELOPE_SIGNATURE"


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    """An envelope as it travels: payload encrypted if point to point, plus signature."""

    envelope: Envelope
    signature: bytes

    def to_bytes(self) -> bytes:
        return bytes(Writer().var(self.envelope.to_bytes()).fixed(self.signature))

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedEnvelope:
        r = Reader(data)
        envelope = Envelope.from_bytes(r.var())
        signature = r.fixed(64)
        r.finish()
        return cls(envelope, signature)


def _header_info(env: Envelope) -> bytes:
    recipient = b"" if env.recipient is None else env.recipient.to_bytes(2, "big")
    return bytes(
        Writer()
        .fixed(_INFO_DOMAIN)
        .fixed(env.session_id)
        .var(env.protocol.encode())
        .u16(env.round)
        .u16(env.sender)
        .var(recipient)
    )


def _signed_bytes(env: Envelope) -> bytes:
    return _SIGN_DOMAIN + env.to_bytes()


def seal(env: Envelope, identity: NodeIdentity, directory: NodeDirectory) -> SealedEnvelope:
    if env.sender != identity.node_id:
        raise ValueError("a node seals only its own envelopes")
    if env.recipient is not None:
        ciphertext = HPKE.encrypt(
            env.payload, directory[env.recipient].recipient_key(), info=_header_info(env)
        )
        env = replace(env, payload=ciphertext)
    return SealedEnvelope(env, identity.sign(_signed_bytes(env)))


def open_sealed(
    sealed: SealedEnvelope, identity: NodeIdentity, directory: NodeDirectory
) -> Envelope:
    """Verify the sender's signature and decrypt a payload addressed to us."""
    env = sealed.envelope
    if env.sender not in directory:
        raise EnvelopeAuthenticationError("sender is not in this node's directory", [env.sender])
    try:
        directory[env.sender].verifier().verify(sealed.signature, _signed_bytes(env))
    except InvalidSignature:
        raise EnvelopeAuthenticationError(
            "envelope signature does not verify", [env.sender]
        ) from None
    if env.recipient is None:
        return env
    if env.recipient != identity.node_id:
        # Authentic but not ours: the relay misrouted it; the router names it.
        return env
    try:
        plaintext = HPKE.decrypt(env.payload, identity.decryption_key, info=_header_info(env))
    except (InvalidTag, ValueError, EncodingError):
        # Signed by the sender yet undecryptable: the sender encrypted garbage.
        raise InvalidMessageError("point-to-point payload does not decrypt", [env.sender]) from None
    return replace(env, payload=plaintext)
