"""The audit chain guarded by a trigger instead of a unique index on prev_hash.

An event may only be appended when its prev_hash is the hash of the event just
before it (64 zeros for seq 1): the database itself keeps the chain linear and
gapless at insert time, which the unique index on prev_hash only approximated.
The index cost a random-key B-tree insert per event (64 hex characters): a sweep
logging 100,000 expiries spent a third of its insert there (benchmarks/, sweep).
The trigger looks up one primary key that the writer has just touched.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
# The hash the new event must name as its predecessor.
EXPECTED = (
    f"CASE WHEN NEW.seq = 1 THEN '{GENESIS}' "
    "ELSE (SELECT hash FROM events WHERE seq = NEW.seq - 1) END"
)
MESSAGE = "resgate: an audit event must follow the last one (seq and prev_hash)"


def upgrade() -> None:
    op.drop_index("uq_events_prev_hash", table_name="events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION resgate_events_chain_guard() RETURNS trigger AS $$
            BEGIN
                IF NEW.prev_hash IS DISTINCT FROM ({EXPECTED}) THEN
                    RAISE EXCEPTION '{MESSAGE}';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql""")
        op.execute("""
            CREATE TRIGGER events_chain_guard BEFORE INSERT ON events
            FOR EACH ROW EXECUTE FUNCTION resgate_events_chain_guard()""")
    else:
        op.execute(f"""
            CREATE TRIGGER events_chain_guard BEFORE INSERT ON events
            WHEN NEW.prev_hash IS NOT ({EXPECTED})
            BEGIN
                SELECT RAISE(ABORT, '{MESSAGE}');
            END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER events_chain_guard ON events")
        op.execute("DROP FUNCTION resgate_events_chain_guard()")
    else:
        op.execute("DROP TRIGGER events_chain_guard")
    op.create_index("uq_events_prev_hash", "events", ["prev_hash"], unique=True)
