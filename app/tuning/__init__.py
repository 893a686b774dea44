"""The feedback loop: editors' step reviews → versioned tuning snapshots → better bots, measured.

Public entry points (other areas build against these names):

- ``app.tuning.snapshots.active_snapshot(settings, character_id) -> LoadedSnapshot | None``
  (cheap per new conversation); ``LoadedSnapshot.wrap(retriever)``, ``.scorer()``,
  ``.exemplar_source()``, ``.id``; ``activate``, ``rollback``, ``list_snapshots``.
- ``app.tuning.verifier.VerifierScorer`` (``domain.StepScorer``), with ``uncertainty`` and
  ``prelabel`` for the review desk.
- ``app.tuning.reranker.RerankingRetriever`` (``domain.Retriever`` wrapper).
- ``app.tuning.exemplars.SnapshotExemplars`` (``domain.ExemplarSource``).
- ``app.tuning.service.tune_character(settings, store, character_id)`` — what ``bookbot tune`` runs.
- ``app.tuning.evaluation`` / ``evalrun`` — ``bookbot eval fairytaleqa``.

Nothing is built at import time.
"""
