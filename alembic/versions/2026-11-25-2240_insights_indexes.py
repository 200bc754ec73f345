"""insights indexes

A covering index for insights' skill counts, which read the skills of each rejection in
range by (rejection_id, kind, skill) without touching the table. (Reflection steps get
none: every rejection create writes seven of them, and the cache spares most insights.)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 22:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reflection_skills", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reflection_skills_rejection_id_kind_skill",
            ["rejection_id", "kind", "skill"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("reflection_skills", schema=None) as batch_op:
        batch_op.drop_index("ix_reflection_skills_rejection_id_kind_skill")
