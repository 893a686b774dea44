"""PostgreSQL: recording a review is one call of ``bookbot_record_review`` (PL/pgSQL).

The function keeps one current review per (step, reviewer, kind), appends its history row
and — for a human editor rating (``p_refresh``) — brings the reviewer's inferred -1 labels
of the turn in line with PRM800K's early stop: the steps after their first human -1 carry
an inferred -1, no other step does; every label it adds or removes gets a history row too.
It returns the stored review, or no row when the step was never saved.  A function call
is one statement, so it is atomic on its own (the store calls it in autocommit mode: one
round trip), and PL/pgSQL keeps each inner statement's plan for the session.  The
early-stop statements run only when they would change something.  The generic path in
``store.py`` (SQLite) gives the same rows; ``tests/review/test_record_paths.py`` checks it.

Schema changes to ``reviews``, ``review_history`` or ``turn_steps`` must replace this
function in their own migration.  SQLite: nothing to do.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SIGNATURE = "bookbot_record_review(text, text, text, integer, text, json, text, timestamptz, boolean)"
HISTORY = "review_id, step_id, reviewer, kind, rating, correction, fault_tags, source, action, recorded_at"
REVIEW = "step_id, turn_id, reviewer, kind, rating, correction, fault_tags, source, created_at, updated_at"

CREATE = f"""
CREATE FUNCTION bookbot_record_review(p_step_id text, p_reviewer text, p_kind text, p_rating integer,
    p_correction text, p_tags json, p_source text, p_now timestamptz, p_refresh boolean)
RETURNS SETOF reviews LANGUAGE plpgsql AS $$
DECLARE
  r reviews;
  act text := 'update';
  step_turn text;
  first_wrong integer;
  first_inferred integer;
BEGIN
  LOOP    -- the current review: changed in place, or created (a concurrent first one: update it)
    UPDATE reviews SET rating = p_rating, correction = p_correction, fault_tags = p_tags,
      source = p_source, updated_at = p_now
    WHERE step_id = p_step_id AND reviewer = p_reviewer AND kind = p_kind
    RETURNING * INTO r;
    EXIT WHEN FOUND;
    SELECT turn_id INTO step_turn FROM turn_steps WHERE id = p_step_id;
    IF NOT FOUND THEN
      RETURN;                                             -- unknown step: nothing stored
    END IF;
    INSERT INTO reviews ({REVIEW})
    VALUES (p_step_id, step_turn, p_reviewer, p_kind, p_rating, p_correction, p_tags, p_source, p_now, p_now)
    ON CONFLICT (step_id, reviewer, kind) DO NOTHING
    RETURNING * INTO r;
    IF FOUND THEN
      act := 'create';
      EXIT;
    END IF;
  END LOOP;
  INSERT INTO review_history ({HISTORY})
  VALUES (r.id, r.step_id, r.reviewer, r.kind, r.rating, r.correction, r.fault_tags, r.source, act, p_now);
  RETURN NEXT r;
  IF NOT p_refresh THEN
    RETURN;
  END IF;
  -- early stop: the reviewer's first human -1 in the turn and first inferred label (an index
  -- probe that usually finds no row); labels go at or before that -1 and come after it
  SELECT min(s.idx) FILTER (WHERE o.source = 'human'), min(s.idx) FILTER (WHERE o.source = 'inferred')
  INTO first_wrong, first_inferred
  FROM reviews o JOIN turn_steps s ON s.id = o.step_id
  WHERE o.turn_id = r.turn_id AND o.kind = 'editor' AND o.source IN ('human', 'inferred')
    AND o.reviewer = p_reviewer AND (o.source = 'inferred' OR o.rating = -1);
  IF first_inferred <= coalesce(first_wrong, first_inferred) THEN
    WITH gone AS (
      DELETE FROM reviews o USING turn_steps s
      WHERE s.id = o.step_id AND o.turn_id = r.turn_id AND o.reviewer = p_reviewer AND o.kind = 'editor'
        AND o.source = 'inferred' AND o.step_id <> p_step_id AND (first_wrong IS NULL OR s.idx <= first_wrong)
      RETURNING o.*
    )
    INSERT INTO review_history ({HISTORY})
    SELECT id, step_id, reviewer, kind, rating, correction, fault_tags, source, 'delete', p_now FROM gone;
  END IF;
  IF first_wrong IS NOT NULL THEN
    WITH born AS (
      INSERT INTO reviews ({REVIEW})
      SELECT s.id, s.turn_id, p_reviewer, 'editor', -1, '', '[]'::json, 'inferred', p_now, p_now
      FROM turn_steps s
      WHERE s.turn_id = r.turn_id AND s.idx > first_wrong AND s.id <> p_step_id
        AND NOT EXISTS (SELECT 1 FROM reviews o WHERE o.step_id = s.id AND o.reviewer = p_reviewer
                        AND o.kind = 'editor')
      ON CONFLICT (step_id, reviewer, kind) DO NOTHING
      RETURNING *
    )
    INSERT INTO review_history ({HISTORY})
    SELECT id, step_id, reviewer, kind, rating, correction, fault_tags, source, 'create', p_now FROM born;
  END IF;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
