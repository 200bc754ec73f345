"""reflections: denormalised skills and mood for insights

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 17:43:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reflection_skills",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("reflection_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("rejection_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("skill", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["reflection_id"],
            ["reflections.id"],
            name=op.f("fk_reflection_skills_reflection_id_reflections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rejection_id"],
            ["rejections.id"],
            name=op.f("fk_reflection_skills_rejection_id_rejections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_reflection_skills_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reflection_skills")),
        sa.UniqueConstraint(
            "reflection_id", "kind", "skill", name=op.f("uq_reflection_skills_reflection_id")
        ),
    )
    with op.batch_alter_table("reflection_skills", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reflection_skills_rejection_id"), ["rejection_id"], unique=False
        )
        batch_op.create_index(
            "ix_reflection_skills_user_id_kind_skill", ["user_id", "kind", "skill"], unique=False
        )

    with op.batch_alter_table("reflections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("emotion_intensity", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("confidence", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reflections", schema=None) as batch_op:
        batch_op.drop_column("confidence")
        batch_op.drop_column("emotion_intensity")

    with op.batch_alter_table("reflection_skills", schema=None) as batch_op:
        batch_op.drop_index("ix_reflection_skills_user_id_kind_skill")
        batch_op.drop_index(batch_op.f("ix_reflection_skills_rejection_id"))

    op.drop_table("reflection_skills")
