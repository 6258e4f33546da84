"""Nonce pools larger than one PrepareNonces call: the coordinator fills them in batches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nacl.signing import VerifyKey

from custody.coordinator.store import CoordinatorStore
from signer_nodes.node.service import MAX_NONCES_PER_CALL
from tests.service.conftest import RunningCluster

TARGET = MAX_NONCES_PER_CALL + 44


@pytest.fixture(scope="module")
def big_pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("pools") / "data"
    with RunningCluster(root, nonce_pool_target=TARGET) as rc:
        yield rc


def test_a_pool_target_above_one_batch_is_filled_and_signs(big_pools: RunningCluster) -> None:
    with big_pools.client("acme") as client:
        key = client.create_key("eddsa-ed25519")
        levels = CoordinatorStore(big_pools.config.coordinator_database_url()).pool_levels(
            key.key_id
        )
        assert levels == {1: TARGET, 2: TARGET, 3: TARGET}
        signed = client.sign(key.key_id, message=b"a big pool")
        VerifyKey(key.public_key).verify(signed.signed_digest, signed.signature)
