<%
    def quoted(revision):
        if revision is None:
            return "None"
        if isinstance(revision, str):
            return f'"{revision}"'
        return "(" + ", ".join(f'"{each}"' for each in revision) + ",)"

    def listed(revision):
        if revision is None:
            return ""
        return " " + (revision if isinstance(revision, str) else ", ".join(revision))
%>\
"""${message}

Revision ID: ${up_revision}
Revises:${listed(down_revision)}
Create Date: ${create_date}
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${quoted(up_revision)}
down_revision = ${quoted(down_revision)}
branch_labels = ${quoted(branch_labels)}
depends_on = ${quoted(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
