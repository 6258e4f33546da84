"""Real SoftHSM2 for the HSM tests.

SoftHSM2 reads ``SOFTHSM2_CONF`` once per process (at ``C_Initialize``) and
does not see tokens initialised later by another process, so the session
provisions every token up front in one configuration: the three nodes, the
backup token, a foreign backup token, and a pool of fresh tokens that tests
take one at a time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hsm.backup import BackupKeyHolder
from hsm.config import SOFTHSM2_CANDIDATES, HsmConfig
from hsm.sealer import Sealer
from hsm.softhsm import SoftHsmHome, provision_tokens

NODES = (1, 2, 3)
POOL = 80
#: Never logged in by any other test, so the wrong-PIN test meets a logged-out token.
PIN_TOKEN = "pin-probe"
#: Target of restores that must fail before touching it (checked to stay empty).
RESTORE_PROBE = "restore-probe"


def softhsm_available() -> bool:
    return shutil.which("softhsm2-util") is not None and any(
        Path(p).is_file() for p in SOFTHSM2_CANDIDATES
    )


@dataclass
class HsmWorld:
    home: SoftHsmHome
    nodes: dict[int, HsmConfig]
    backup: HsmConfig
    foreign_backup: HsmConfig
    pin_probe: HsmConfig
    restore_probe: HsmConfig
    pool: list[HsmConfig]
    holders: dict[str, BackupKeyHolder] = field(default_factory=dict)

    def fresh(self) -> HsmConfig:
        return self.pool.pop()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HsmWorld]:
    if not softhsm_available():
        pytest.skip("SoftHSM2 not installed (Debian package 'softhsm2')")
    home = SoftHsmHome(tmp_path_factory.mktemp("softhsm"))
    pool = [f"fresh-{i:02d}" for i in range(POOL)]
    labels = [
        *(f"node-{i}" for i in NODES),
        "backup",
        "backup-foreign",
        PIN_TOKEN,
        RESTORE_PROBE,
        *pool,
    ]
    configs = provision_tokens(home, labels)
    w = HsmWorld(
        home=home,
        nodes={i: configs[f"node-{i}"] for i in NODES},
        backup=configs["backup"],
        foreign_backup=configs["backup-foreign"],
        pin_probe=configs[PIN_TOKEN],
        restore_probe=configs[RESTORE_PROBE],
        pool=[configs[label] for label in pool],
    )
    w.holders["backup"] = BackupKeyHolder.generate(w.backup)
    w.holders["foreign"] = BackupKeyHolder.generate(w.foreign_backup)
    yield w
    for h in w.holders.values():
        h.close()


@pytest.fixture
def sealer(world: HsmWorld) -> Iterator[Sealer]:
    s = Sealer.open(world.fresh(), create_key=True)
    yield s
    s.close()
