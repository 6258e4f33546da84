"""payments: who pays the network fee, the fee the chain took, the CANCELLED state

``fee_payer`` (``customer`` | ``operator``): rows written before it existed were paid by
the operator, hence the server default. ``fee_paid``: the fee a broadcaster reports
after inclusion (at most the booked ``fee``). ``state`` gains ``CANCELLED`` (a withdrawal
whose signing request its initiator cancelled while it waited for approvals).

Autogenerate writes the two columns; the check constraints are written by hand
(Alembic does not compare them). SQLite changes a check constraint only by rebuilding
the table (batch mode); the rebuild copies the table as written here (``copy_from``),
not as reflected, so that the offline SQL (``python -m custody.migrations sql``) is
the same as what runs.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-21 13:07:58.001220
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0002"
down_revision: str | Sequence[str] | None = "c0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_AMOUNT = (1 << 256) - 1
STATES_OLD = "state IN ('RESERVED', 'SETTLED', 'RELEASED')"
STATES_NEW = "state IN ('RESERVED', 'SETTLED', 'RELEASED', 'CANCELLED')"
FEE_PAYER = "fee_payer IN ('customer', 'operator')"
FEE_PAID = "fee_paid IS NULL OR (state = 'SETTLED' AND fee_paid <= fee)"


def _amount() -> sa.String:
    return sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")


def _range(column: str, *, positive: bool, dialect: str) -> sa.CheckConstraint:
    """``custody.ledger.amounts.amount_checks`` as of this revision, for ``dialect``
    only: a table rebuilt by batch mode keeps every constraint it is given."""
    if dialect == "postgresql":
        low = f"{column} > 0" if positive else f"{column} >= 0"
        return sa.CheckConstraint(
            f"{low} AND {column} <= {MAX_AMOUNT}", name=f"ck_payments_{column}_pg"
        )
    lite_low = f" AND {column} > '{'0' * 78}'" if positive else ""
    return sa.CheckConstraint(
        f"length({column}) = 78 AND {column} NOT GLOB '*[^0-9]*'"
        f" AND {column} <= '{MAX_AMOUNT:078d}'{lite_low}",
        name=f"ck_payments_{column}_sqlite",
    )


def _payments(*, new: bool, dialect: str) -> sa.Table:
    """The ``payments`` table of ``c0001`` (``new=False``) or of this revision."""
    extra: list[sa.schema.SchemaItem] = []
    if new:
        extra = [
            sa.Column("fee_payer", sa.String(16), server_default="operator", nullable=False),
            sa.Column("fee_paid", _amount(), nullable=True),
            sa.CheckConstraint(FEE_PAYER, name="ck_payments_fee_payer"),
            sa.CheckConstraint(FEE_PAID, name="ck_payments_fee_paid"),
            _range("fee_paid", positive=False, dialect=dialect),
        ]
    return sa.Table(
        "payments",
        sa.MetaData(),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("payment_id", sa.String(100), nullable=False),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("path", sa.String(256), nullable=False),
        sa.Column("chain", sa.String(64), nullable=False),
        sa.Column("asset", sa.String(128), nullable=False),
        sa.Column("destination", sa.String(256), nullable=False),
        sa.Column("amount", _amount(), nullable=False),
        sa.Column("fee", _amount(), nullable=False),
        sa.Column("fee_asset", sa.String(128), nullable=False),
        sa.Column("wallet_id", sa.String(256), nullable=False),
        sa.Column("from_address", sa.String(128), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_unix", sa.BigInteger(), nullable=False),
        sa.Column("raw_transaction", sa.LargeBinary(), nullable=True),
        sa.Column("txid", sa.String(66), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(state = 'SETTLED') = (raw_transaction IS NOT NULL)", name="ck_payments_signed"
        ),
        sa.CheckConstraint(STATES_NEW if new else STATES_OLD, name="ck_payments_state"),
        _range("amount", positive=True, dialect=dialect),
        _range("fee", positive=False, dialect=dialect),
        *extra,
        sa.PrimaryKeyConstraint("tenant", "payment_id"),
        sa.Index("ix_payments_wallet_id", "wallet_id"),
        sa.Index("ix_payments_wallet_state", "wallet_id", "state"),
    )


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    with op.batch_alter_table(
        "payments", copy_from=_payments(new=False, dialect=dialect)
    ) as batch_op:
        batch_op.add_column(
            sa.Column("fee_payer", sa.String(16), server_default="operator", nullable=False)
        )
        batch_op.add_column(sa.Column("fee_paid", _amount(), nullable=True))
        batch_op.drop_constraint("ck_payments_state", type_="check")
        batch_op.create_check_constraint("ck_payments_state", STATES_NEW)
        batch_op.create_check_constraint("ck_payments_fee_payer", FEE_PAYER)
        batch_op.create_check_constraint("ck_payments_fee_paid", FEE_PAID)
        fee_paid = _range("fee_paid", positive=False, dialect=dialect)
        batch_op.create_check_constraint(str(fee_paid.name), fee_paid.sqltext)


def downgrade() -> None:
    """Loses who paid the fee and the fees reported; a CANCELLED payment becomes
    RELEASED (its error code still says why)."""
    dialect = op.get_context().dialect.name
    op.execute("UPDATE payments SET state = 'RELEASED' WHERE state = 'CANCELLED'")
    with op.batch_alter_table(
        "payments", copy_from=_payments(new=True, dialect=dialect)
    ) as batch_op:
        fee_paid = _range("fee_paid", positive=False, dialect=dialect)
        batch_op.drop_constraint(str(fee_paid.name), type_="check")
        batch_op.drop_constraint("ck_payments_fee_paid", type_="check")
        batch_op.drop_constraint("ck_payments_fee_payer", type_="check")
        batch_op.drop_constraint("ck_payments_state", type_="check")
        batch_op.create_check_constraint("ck_payments_state", STATES_OLD)
        batch_op.drop_column("fee_paid")
        batch_op.drop_column("fee_payer")
