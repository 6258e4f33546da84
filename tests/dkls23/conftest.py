from __future__ import annotations

import pytest

from signer_nodes.mpc.dkls23.context import PairContext
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from tests.dkls23.helpers import ALICE, BOB, setup_pair


@pytest.fixture(scope="session")
def setups() -> tuple[AliceSetup, BobSetup]:
    """One key setup for the ordered pair (ALICE, BOB), shared by the tests."""
    return setup_pair(PairContext(session_id=b"dkls23-test-keygen", alice=ALICE, bob=BOB))
