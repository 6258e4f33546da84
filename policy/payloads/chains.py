"""The chains whose payloads a signer node can interpret, by the name requests use.

A request's ``chain`` selects the network parameters the node checks the payload
against: the EIP-155 chain id an Ethereum transaction must carry, or the address
prefix (BIP173 human-readable part) Bitcoin destinations are written with. A payload
for another network is refused (``CHAIN_MISMATCH``), so a policy written for
``ethereum-sepolia`` can never approve a mainnet transaction.

Token contracts are part of the chain's parameters: an ERC-20 ``transfer`` is only
read as a transfer of ``asset`` when its ``to`` is the contract registered for
``(chain, asset)`` here; any other call is a ``contract_call`` of the native asset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from policy.payloads.errors import PayloadCode, PayloadError

Family = Literal["ethereum", "bitcoin"]


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    family: Family
    native_asset: str
    eip155_chain_id: int = 0
    """Ethereum family: the EIP-155 chain id every transaction must name."""
    hrp: str = ""
    """Bitcoin family: the segwit address prefix (BIP173), e.g. ``bc``."""
    base58_p2pkh: int = 0
    base58_p2sh: int = 0
    tokens: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Ethereum family: asset -> ERC-20 contract address (lowercase ``0x`` hex)."""


def _tokens(**kw: str) -> MappingProxyType[str, str]:
    return MappingProxyType({k: v.lower() for k, v in kw.items()})


CHAINS: MappingProxyType[str, Chain] = MappingProxyType(
    {
        c.name: c
        for c in (
            Chain(
                "ethereum",
                "ethereum",
                "ETH",
                eip155_chain_id=1,
                tokens=_tokens(
                    USDC="0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                    USDT="0xdAC17F958D2ee523a2206206994597C13D831ec7",
                ),
            ),
            Chain("ethereum-sepolia", "ethereum", "ETH", eip155_chain_id=11155111),
            Chain("ethereum-holesky", "ethereum", "ETH", eip155_chain_id=17000),
            Chain("bitcoin", "bitcoin", "BTC", hrp="bc", base58_p2pkh=0x00, base58_p2sh=0x05),
            Chain(
                "bitcoin-testnet", "bitcoin", "BTC", hrp="tb", base58_p2pkh=0x6F, base58_p2sh=0xC4
            ),
            Chain(
                "bitcoin-signet", "bitcoin", "BTC", hrp="tb", base58_p2pkh=0x6F, base58_p2sh=0xC4
            ),
            Chain(
                "bitcoin-regtest",
                "bitcoin",
                "BTC",
                hrp="bcrt",
                base58_p2pkh=0x6F,
                base58_p2sh=0xC4,
            ),
        )
    }
)


def chain(name: str) -> Chain:
    """The parameters of ``name``; ``UNSUPPORTED_CHAIN`` for anything else."""
    try:
        return CHAINS[name]
    except KeyError:
        raise PayloadError(
            PayloadCode.UNSUPPORTED_CHAIN, f"unknown chain {name!r}", field="chain"
        ) from None
