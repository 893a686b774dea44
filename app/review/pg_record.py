"""Recording a review on PostgreSQL in one statement (one round trip, atomic on its own).

`ReviewStore.record_review` on PostgreSQL runs ``RECORD`` with the connection in autocommit
mode: one data-modifying statement upserts the current review, appends its history row and
— for a human editor rating — brings the reviewer's inferred -1 labels of the turn in line
with PRM800K's early stop (labels after the first -1; removed when it goes), with history
rows for each.  A statement is atomic, so a failure stores nothing.  The generic path (the
ORM, SQLite) gives the same rows; the review tests run on both.  Row locks taken by the
upsert keep two writes of one review in order.
"""

from __future__ import annotations

from sqlalchemy import text

_COLS = "step_id, turn_id, reviewer, kind, rating, correction, fault_tags, source, created_at, updated_at"
_HIST = "review_id, step_id, reviewer, kind, rating, correction, fault_tags, source, action, recorded_at"

RECORD = text(f"""
WITH step AS (
  SELECT id, turn_id, idx FROM turn_steps WHERE id = :step_id
), prior AS (
  SELECT 1 FROM reviews WHERE step_id = :step_id AND reviewer = :reviewer AND kind = :kind
), up AS (
  INSERT INTO reviews ({_COLS})
  SELECT step.id, step.turn_id, :reviewer, :kind, :rating, :correction, CAST(:tags AS json), :source, :now, :now
  FROM step
  ON CONFLICT (step_id, reviewer, kind) DO UPDATE SET rating = EXCLUDED.rating,
    correction = EXCLUDED.correction, fault_tags = EXCLUDED.fault_tags, source = EXCLUDED.source,
    updated_at = EXCLUDED.updated_at
  RETURNING id, {_COLS}
), h AS (
  INSERT INTO review_history ({_HIST})
  SELECT id, step_id, reviewer, kind, rating, correction, fault_tags, source,
         CASE WHEN EXISTS (SELECT 1 FROM prior) THEN 'update' ELSE 'create' END, :now FROM up
), need AS (          -- early-stop labels can change only after a -1 now or earlier
  SELECT :refresh AND ((:rating = -1 AND :source = 'human') OR EXISTS (
    SELECT 1 FROM reviews r JOIN step ON r.turn_id = step.turn_id
    WHERE r.reviewer = :reviewer AND r.kind = 'editor' AND r.step_id <> :step_id
      AND (r.source = 'inferred' OR (r.source = 'human' AND r.rating = -1)))) AS yes
), fw AS (
  SELECT LEAST(
    (SELECT min(s.idx) FROM reviews r JOIN turn_steps s ON s.id = r.step_id JOIN step ON r.turn_id = step.turn_id
      WHERE r.reviewer = :reviewer AND r.kind = 'editor' AND r.source = 'human' AND r.rating = -1
        AND r.step_id <> :step_id),
    (SELECT idx FROM step WHERE :rating = -1 AND :source = 'human')) AS idx
), gone AS (
  DELETE FROM reviews r USING turn_steps s, step
  WHERE (SELECT yes FROM need) AND s.id = r.step_id AND r.turn_id = step.turn_id AND r.reviewer = :reviewer
    AND r.kind = 'editor' AND r.source = 'inferred' AND r.step_id <> :step_id
    AND ((SELECT idx FROM fw) IS NULL OR s.idx <= (SELECT idx FROM fw))
  RETURNING r.*
), born AS (
  INSERT INTO reviews ({_COLS})
  SELECT s.id, s.turn_id, :reviewer, 'editor', -1, '', CAST('[]' AS json), 'inferred', :now, :now
  FROM turn_steps s JOIN step ON s.turn_id = step.turn_id
  WHERE (SELECT yes FROM need) AND s.idx > (SELECT idx FROM fw) AND s.id <> :step_id
    AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.step_id = s.id AND r.reviewer = :reviewer
                    AND r.kind = 'editor')
  ON CONFLICT (step_id, reviewer, kind) DO NOTHING
  RETURNING *
), hg AS (
  INSERT INTO review_history ({_HIST})
  SELECT id, step_id, reviewer, kind, rating, correction, fault_tags, source, 'delete', :now FROM gone
), hb AS (
  INSERT INTO review_history ({_HIST})
  SELECT id, step_id, reviewer, kind, rating, correction, fault_tags, source, 'create', :now FROM born
)
SELECT * FROM up
""")
