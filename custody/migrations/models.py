"""Which tables belong to which database role: the target metadata of each
Alembic environment. A new ``DeclarativeBase`` whose tables live in one of the
databases must be listed here (``docs/migrations.md``), or autogenerate would
not see it and ``check`` could not catch the omission."""

from __future__ import annotations

from sqlalchemy import MetaData

from signer_nodes.db import Role


def target_metadata(role: Role) -> list[MetaData]:
    """Every metadata whose tables the ``role`` database holds. Imported here, not at
    module level: the model modules import :mod:`signer_nodes.db`, which runs this."""
    if role is Role.COORDINATOR:
        from custody.coordinator.store import Base as CoordinatorBase
        from custody.governance.tables import GovernanceBase
        from custody.ledger.models import LedgerBase
        from custody.payments.models import PaymentsBase
        from custody.por.store import Base as PorBase

        bases = [CoordinatorBase, GovernanceBase, LedgerBase, PaymentsBase, PorBase]
    else:
        from signer_nodes.node.policy_state import PolicyBase
        from signer_nodes.node.store import Base as NodeBase

        bases = [NodeBase, PolicyBase]
    return [base.metadata for base in bases]


def table_names(role: Role) -> set[str]:
    return {name for metadata in target_metadata(role) for name in metadata.tables}
