"""drop the redundant index on reflection_skills.rejection_id

The covering index of 0008 starts with rejection_id, so it serves everything the
single-column index did (the foreign key's cascade included); a second index only costs
every write of step 2.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reflection_skills", schema=None) as batch_op:
        batch_op.drop_index("ix_reflection_skills_rejection_id")


def downgrade() -> None:
    with op.batch_alter_table("reflection_skills", schema=None) as batch_op:
        batch_op.create_index("ix_reflection_skills_rejection_id", ["rejection_id"], unique=False)
