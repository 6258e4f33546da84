"""Parameters of the DKLs23 two-party multiplication over secp256k1.

Doerner, Kondi, Lee, shelat, "Threshold ECDSA in Three Rounds" (IEEE S&P
2024, ePrint 2023/765) realise the random vector OLE functionality
F_RVOLE (Functionality 3.5) with the OT-based protocol pi_RVOLE
(Protocol 5.2) on top of a correlated OT extension F_COTe
(Functionality 5.1), itself instantiated with SoftSpokenOT (Roy, CRYPTO
2022) made non-interactive with Fiat-Shamir (Section 5.1).  Section and
item numbers here and in the modules refer to the ePrint version.

Parameter choices (the paper's symbols):

* ``KAPPA`` = |q| = 256: bits of the secp256k1 group order.
* ``LAMBDA_S`` = 128: statistical security of pi_RVOLE; Bob's input is
  encoded with ``XI = KAPPA + 2 * LAMBDA_S`` random bits against a random
  gadget vector, so a selective-failure attack by Alice leaves Bob's input
  ``2^-LAMBDA_S``-close to uniform.  (The paper leaves lambda_s free; 128
  is the conservative choice of the Silence Laboratories implementation;
  80 would give XI = 416.)
* ``LAMBDA_C`` = 128: computational security; the number of base OTs
  and the width of the OT-extension rows (the hash-to-pad key length).
* ``ELL`` = 2: Alice's vector length in the signing protocol.
* ``RHO`` = ceil(LAMBDA_C / KAPPA) = 1: number of random check columns
  Alice appends to her vector in pi_RVOLE.
* ``SOFTSPOKEN_K`` = 1: SoftSpokenOT's subfield-VOLE dimension.  With
  ``k = 1`` the all-but-one OTs are plain 1-out-of-2 OTs and the protocol
  is the IKNP/KOS extension with SoftSpokenOT's (KOS15 Fig. 10, revised)
  consistency check; larger ``k`` trades computation for bandwidth.
* ``CHECK_BITS`` = 128: width of the consistency check's universal hash
  (GF(2^128)), which also costs that many extra random OTs.
"""

from __future__ import annotations

from typing import Final

KAPPA: Final = 256
LAMBDA_S: Final = 128
LAMBDA_C: Final = 128
XI: Final = KAPPA + 2 * LAMBDA_S
ELL: Final = 2
RHO: Final = -(-LAMBDA_C // KAPPA)
OT_WIDTH: Final = ELL + RHO
SOFTSPOKEN_K: Final = 1
CHECK_BITS: Final = 128

#: Number of base OTs per ordered pair (one per row bit of the extension).
BASE_OT_COUNT: Final = LAMBDA_C // SOFTSPOKEN_K
#: OTs extended per multiplication: XI for pi_RVOLE plus the check's padding.
EXTENDED_OTS: Final = XI + CHECK_BITS
#: Bytes of one column of the extension matrix.
COLUMN_BYTES: Final = EXTENDED_OTS // 8
#: Bytes of one row (one extended OT) of the extension matrix.
ROW_BYTES: Final = LAMBDA_C // 8
#: Check blocks that the universal hash compresses (the last block masks).
CHECK_BLOCKS: Final = XI // CHECK_BITS

#: Bytes of a seed produced by a base OT.
SEED_BYTES: Final = 32
#: Bytes of hash output reduced to one pad scalar (bias below 2^-128).
PAD_SCALAR_BYTES: Final = 48
#: Bytes of fresh nonces that make every extension's hashes unique.
NONCE_BYTES: Final = 32

assert XI % CHECK_BITS == 0
assert LAMBDA_C % 8 == 0
