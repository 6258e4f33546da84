"""The node's sealer (signer_nodes.node.sealing.HsmSealer) on real SoftHSM2."""

from __future__ import annotations

import pytest

from hsm.sealer import RecordKind, SealedBlob, Sealer
from hsm.sealer import SealContext as HsmContext
from signer_nodes.node.sealing import (
    KINDS,
    RECORD_FORMAT_VERSION,
    HsmSealer,
    SealContext,
    SealingError,
)

NODE = 7
CTX = SealContext(NODE, "key-1", 3, "share")


@pytest.fixture
def node(world):  # type: ignore[no-untyped-def]
    config = world.fresh()
    Sealer.open(config, create_key=True).close()
    with HsmSealer.open(NODE, config) as s:
        yield s, config


def code(fn) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SealingError) as exc:
        fn()
    return exc.value.code


def test_every_kind_round_trips_and_binds_node_key_epoch_kind_version(node) -> None:  # type: ignore[no-untyped-def]
    sealer, _ = node
    for kind in KINDS:
        ctx = SealContext(NODE, "key-1/entry", 5, kind)
        blob = sealer.seal(b"secret " + kind.encode(), ctx)
        assert b"secret" not in blob
        assert sealer.unseal(blob, ctx) == b"secret " + kind.encode()
        header = SealedBlob.parse(blob).context
        assert header == HsmContext(NODE, "key-1/entry", 5, KINDS[kind], RECORD_FORMAT_VERSION)


def test_unknown_kind_is_refused(node) -> None:  # type: ignore[no-untyped-def]
    sealer, _ = node
    blob = sealer.seal(b"x" * 32, CTX)
    bogus = SealContext(NODE, "key-1", 3, "shares")
    assert code(lambda: sealer.seal(b"x", bogus)) == "SEAL_KIND_UNKNOWN"
    assert code(lambda: sealer.unseal(blob, bogus)) == "SEAL_KIND_UNKNOWN"


def test_other_node_is_refused(node) -> None:  # type: ignore[no-untyped-def]
    sealer, _ = node
    other = SealContext(NODE + 1, "key-1", 3, "share")
    assert code(lambda: sealer.seal(b"x", other)) == "SEAL_NODE_MISMATCH"


def test_tampered_or_moved_blobs_are_refused(node) -> None:  # type: ignore[no-untyped-def]
    sealer, _ = node
    blob = sealer.seal(b"k" * 64, CTX)
    for i in range(0, len(blob), 7):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        assert code(lambda b=bytes(bad): sealer.unseal(b, CTX)) == "SEALED_BLOB_INVALID", i
    assert code(lambda: sealer.unseal(blob[:-1], CTX)) == "SEALED_BLOB_INVALID"
    for moved in (
        SealContext(NODE, "key-2", 3, "share"),
        SealContext(NODE, "key-1", 4, "share"),
        SealContext(NODE, "key-1", 3, "nonce"),
    ):
        assert code(lambda m=moved: sealer.unseal(blob, m)) == "SEALED_BLOB_INVALID"


def test_other_format_version_is_refused(node) -> None:  # type: ignore[no-untyped-def]
    sealer, config = node
    with Sealer.open(config) as raw:
        blob = raw.seal(b"v2 record", HsmContext(NODE, "key-1", 3, RecordKind.SHARE, 2))
    assert code(lambda: sealer.unseal(blob, CTX)) == "SEALED_BLOB_INVALID"


def test_blob_of_another_token_is_refused(world, node) -> None:  # type: ignore[no-untyped-def]
    sealer, _ = node
    other_config = world.fresh()
    with HsmSealer(NODE, Sealer.open(other_config, create_key=True)) as other:
        blob = other.seal(b"elsewhere", CTX)  # same key label seal-key-v1, other key
    assert code(lambda: sealer.unseal(blob, CTX)) == "SEALED_BLOB_INVALID"


def test_token_without_sealing_key_does_not_open(world) -> None:  # type: ignore[no-untyped-def]
    from hsm.errors import Code, HsmError

    with pytest.raises(HsmError) as exc:
        HsmSealer.open(NODE, world.fresh())
    assert exc.value.code == Code.HSM_KEY_NOT_FOUND


def test_a_rotation_elsewhere_is_picked_up_without_restart(node) -> None:  # type: ignore[no-untyped-def]
    """Another session (in production: ``custody hsm rotate`` in another process)
    adds key v2: the node opens v2 blobs at once and, once its key list is
    refreshed, seals under v2."""
    sealer, config = node
    old = sealer.seal(b"before", CTX)
    with Sealer.open(config) as rotator:
        assert rotator.rotate() == 2
        new = rotator.seal(b"after", HsmContext(NODE, "key-1", 3, RecordKind.SHARE))
    assert sealer.unseal(new, CTX) == b"after"
    assert sealer.unseal(old, CTX) == b"before"
    refreshing = HsmSealer(NODE, Sealer.open(config, refresh_interval=0.0))
    with Sealer.open(config) as rotator:
        rotator.rotate()
    assert SealedBlob.parse(refreshing.seal(b"x", CTX)).key_label == "seal-key-v3"
    refreshing.close()
