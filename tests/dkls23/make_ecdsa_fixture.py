"""Regenerates ``fixtures/dkls23_ecdsa_v1.json`` (run only when the format
version changes, and keep the old file): ``python -m tests.dkls23.make_ecdsa_fixture``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from signer_nodes.mpc.dkls23.keyshare import KEY_SHARE_VERSION
from signer_nodes.mpc.dkls23.presign import PRESIGNATURE_VERSION
from signer_nodes.mpc.groups import SECP256K1
from tests.dkls23.ecdsa_helpers import presign, run_keygen

FIXTURE = Path(__file__).parent / "fixtures" / "dkls23_ecdsa_v1.json"


def main() -> None:
    shares = run_keygen(2, 2)
    presigs = presign(shares, (1, 2))
    data = {
        "comment": "DKLs23 2-of-2 test key: KeyShare v1 and Presignature v1 encodings",
        "key_share_version": KEY_SHARE_VERSION,
        "presignature_version": PRESIGNATURE_VERSION,
        "public_key": SECP256K1.serialize_element(shares[1].group_public_key).hex(),
        "message_hash": hashlib.sha256(b"dkls23 fixture").hexdigest(),
        "key_shares": {str(i): s.to_bytes().hex() for i, s in shares.items()},
        "presignatures": {str(i): p.to_bytes().hex() for i, p in presigs.items()},
    }
    FIXTURE.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
