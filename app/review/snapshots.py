"""Tuning snapshots table API: a versioned record per tuning run (character, metrics, artifact
path) with at most one active snapshot per character.  The tuning area writes the artifacts;
this module only keeps the rows, so `ReviewStore` gets add/activate/list/active methods.  A row
may also carry the artefacts themselves (file name -> text), so that every app instance on a
shared database can load the active snapshot without the folder it was built in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update

from app.review.models import TuningSnapshot


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    character_id: str
    created_at: datetime
    metrics: dict[str, Any]
    active: bool
    artifact_path: str


def _info(row: TuningSnapshot) -> SnapshotInfo:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
    return SnapshotInfo(id=row.id, character_id=row.character_id, created_at=created,
                        metrics=dict(row.metrics or {}), active=row.active,
                        artifact_path=row.artifact_path)


class SnapshotsMixin:
    def add_snapshot(self, snapshot_id: str, character_id: str, *, metrics: dict[str, Any] | None = None,
                     artifact_path: str = "", active: bool = False,
                     artefacts: dict[str, str] | None = None) -> SnapshotInfo:
        with self._tx() as s:
            if active:
                s.execute(update(TuningSnapshot).where(TuningSnapshot.character_id == character_id)
                          .values(active=False))
            row = TuningSnapshot(id=snapshot_id, character_id=character_id, metrics=metrics or {},
                                 artifact_path=artifact_path, active=active, artefacts=artefacts,
                                 created_at=datetime.now(timezone.utc))
            s.add(row)
            s.flush()
            return _info(row)

    def activate_snapshot(self, snapshot_id: str) -> SnapshotInfo:
        """Make one snapshot the active one of its character (the others become inactive)."""
        with self._tx() as s:
            row = s.get(TuningSnapshot, snapshot_id, with_for_update=True)
            if row is None:
                raise KeyError(f"no tuning snapshot {snapshot_id!r}")
            s.execute(update(TuningSnapshot).where(TuningSnapshot.character_id == row.character_id)
                      .values(active=False))
            row.active = True
            s.flush()
            return _info(row)

    def deactivate_snapshots(self, character_id: str) -> None:
        with self._tx() as s:
            s.execute(update(TuningSnapshot).where(TuningSnapshot.character_id == character_id)
                      .values(active=False))

    def active_snapshot(self, character_id: str) -> SnapshotInfo | None:
        with self._tx() as s:
            row = s.scalar(select(TuningSnapshot).where(TuningSnapshot.character_id == character_id,
                                                        TuningSnapshot.active.is_(True)))
            return _info(row) if row else None

    def snapshot_artefacts(self, snapshot_id: str) -> dict[str, str] | None:
        """The snapshot's files as stored with its row (None when only its folder has them)."""
        with self._tx() as s:
            return s.scalar(select(TuningSnapshot.artefacts).where(TuningSnapshot.id == snapshot_id))

    def attach_artefacts(self, snapshot_id: str, artefacts: dict[str, str]) -> None:
        """Store a snapshot's files with a row that was added without them."""
        with self._tx() as s:
            s.execute(update(TuningSnapshot).where(TuningSnapshot.id == snapshot_id).values(artefacts=artefacts))

    def list_snapshots(self, character_id: str | None = None) -> list[SnapshotInfo]:
        q = select(TuningSnapshot).order_by(TuningSnapshot.created_at.desc())
        if character_id is not None:
            q = q.where(TuningSnapshot.character_id == character_id)
        with self._tx() as s:
            return [_info(r) for r in s.scalars(q)]
