"""The feedback loop: editors' step reviews → versioned tuning snapshots → better bots, measured.

Public entry points (other areas build against these names):

- ``app.tuning.snapshots.tuned_parts(settings, character_id, retriever)`` -> (retriever, scorer,
  exemplars, snapshot id) for a new engine; ``active_snapshot(settings, character_id)``
  (cheap per new conversation); ``LoadedSnapshot.wrap(retriever)``, ``.scorer()``,
  ``.exemplar_source()``, ``.id``; ``activate``, ``rollback``, ``list_snapshots``.
- ``app.tuning.verifier.VerifierScorer`` (``domain.StepScorer``), with ``uncertainty`` and
  ``prelabel`` for the review desk.
- ``app.tuning.reranker.reranked(retriever, model, priors)`` (the re-ranker as a LlamaIndex node
  postprocessor on the library's retriever, a ``RerankingRetriever`` wrapper elsewhere).
- ``app.tuning.listwise.fit_listwise`` (how the verifier learns to choose among siblings),
  ``app.tuning.crossval.choose_l2`` (how far reviews may move it from the untuned ranking) and
  ``app.tuning.gate.decide`` (a snapshot goes live only on a clear held-out gain).
- ``app.tuning.exemplars.SnapshotExemplars`` (``domain.ExemplarSource``).
- ``app.tuning.service.tune_character(settings, store, character_id)`` — what ``bookbot tune`` runs.
- ``app.tuning.evaluation`` / ``evalrun`` — ``bookbot eval fairytaleqa``; ``app.tuning.novelqa`` —
  our own question set over the novels (``benchmarks/novel_eval.py``).

Nothing is built at import time.
"""
