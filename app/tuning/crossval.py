"""How far reviews may move a learned verifier from the untuned ranking: chosen by cross-validation.

Reviewed turns are split into folds; each strength of the pull back to the untuned
ranking (`L2_GRID`, most cautious first; None keeps the untuned ranking and only
calibrates it) is fitted on the other folds and scored on the held-out one: how
often its top candidate is the sibling a review preferred, or, when the reviews
made too few choices, how well it fits their good/bad labels.  The most cautious
strength within two standard errors of the best (the one-SE rule, made stricter)
is taken, so a snapshot departs from the untuned bot only when reviews on turns it
was not fitted on show that the departure chooses better.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Mapping, Sequence

import numpy as np

from app.tuning.linear import LinearModel
from app.tuning.listwise import CandidateList

L2_GRID = (None, 300.0, 60.0, 20.0, 5.0)   # most cautious first; None: the untuned ranking, as it is
CV_FOLDS = 3
SE_RULE = 2.0                # a stronger pull must beat a more cautious one by this many standard errors
MIN_CV_REVIEWS = 30          # fewer reviews than this cannot show that a learned verifier is better

Examples = list[tuple[CandidateList | None, list[tuple[dict[str, float], int, float]]]]
Fit = Callable[..., LinearModel]      # fit(examples, l2=...) -> model


def _choice_hits(model: LinearModel, examples: Examples) -> list[float]:
    """Per review that made a choice, 1 when the model's top sibling is the one it preferred
    (weighted as in training; a tie at the top counts as a miss)."""
    out = []
    for candidate_list, _ in examples:
        if candidate_list is None or len(candidate_list.rows) < 2 or \
                len(candidate_list.target) >= len(candidate_list.rows):
            continue
        z = model.decision(candidate_list.rows)
        top = np.flatnonzero(z >= z.max() - 1e-12)
        out.append(candidate_list.weight * float(len(top) == 1 and int(top[0]) in candidate_list.target))
    return out


def _label_losses(model: LinearModel, examples: Examples) -> list[float]:
    """Per review, the log loss of its reviewed candidates' labels (weighted as in training)."""
    out = []
    for _, rows in examples:
        probs = model.predict_proba([r for r, _, _ in rows])
        out.append(-sum(w * math.log(max(float(p if y else 1.0 - p), 1e-12)) for (_, y, w), p in zip(rows, probs)))
    return out


def choose_l2(turns: tuple[Sequence[str], Sequence[str]], examples: Examples, fit: Fit, *,
              folds: int = CV_FOLDS, seed: int = 0) -> tuple[float | None, dict]:
    """How far the reviews may pull the verifier from the untuned ranking, by cross-validation.

    ``turns`` is (every turn id in a fixed order, the turn id of each example); turns are
    split into ``folds``; each `L2_GRID` value is fitted (``fit``) on the other folds and
    scored on the held-out fold's reviews by how often its top candidate is the sibling they
    preferred: the ranking is what decides which candidate a reader sees.  Only when the
    reviews made too few choices does the log loss on their good/bad labels decide.  The most
    cautious value within `SE_RULE` standard errors of the best is chosen, so the
    untuned ranking (None) stays unless the reviews show, on turns they were not fitted on,
    that a learned verifier chooses better."""
    order, turn_of = list(turns[0]), list(turns[1])
    random.Random(seed).shuffle(order)
    fold_of = {t: k % folds for k, t in enumerate(order)}
    if len(examples) < MIN_CV_REVIEWS or len(order) < folds:
        return None, {"chosen": _l2_name(None), "reason": f"fewer than {MIN_CV_REVIEWS} reviews"}
    choices = sum(1 for cl, _ in examples if cl is not None and 1 < len(cl.rows) and len(cl.target) < len(cl.rows))
    criterion = "choices" if choices >= MIN_CV_REVIEWS else "labels"
    table: dict[str, dict] = {}
    gains_of: dict[str, np.ndarray] = {}      # per held-out review, higher is better
    for l2 in L2_GRID:
        gains: list[float] = []
        for k in range(folds):
            fit_on = [ex for turn, ex in zip(turn_of, examples) if fold_of[turn] != k]
            held = [ex for turn, ex in zip(turn_of, examples) if fold_of[turn] == k]
            model = fit(fit_on, l2=l2)
            gains += _choice_hits(model, held) if criterion == "choices" else \
                [-x for x in _label_losses(model, held)]
        arr = gains_of[_l2_name(l2)] = np.array(gains)
        table[_l2_name(l2)] = {"accuracy" if criterion == "choices" else "minus_log_loss": round(float(arr.mean()), 4)}
    best = max(gains_of, key=lambda name: gains_of[name].mean())
    for name, arr in gains_of.items():     # standard error of the difference to the best, paired by review
        table[name]["se_vs_best"] = round(float((gains_of[best] - arr).std() / math.sqrt(len(arr))), 4)
    chosen = next(l2 for l2 in L2_GRID if gains_of[_l2_name(l2)].mean()
                  >= gains_of[best].mean() - SE_RULE * table[_l2_name(l2)]["se_vs_best"])
    return chosen, {"chosen": _l2_name(chosen), "criterion": criterion, "folds": folds, "grid": table}


def describe_choice(choice: Mapping) -> str:
    """One line for `bookbot tune`: which ranking the verifier keeps, and the held-out numbers why."""
    if not choice:
        return "verifier: no choice recorded"
    if "grid" not in choice:
        return f"verifier: kept the untuned ranking ({choice.get('reason', 'no reviews to compare')})"
    metric = "accuracy" if choice.get("criterion") == "choices" else "minus_log_loss"
    what = "picked the sibling reviews preferred" if metric == "accuracy" else "fit the held-out labels"
    grid = choice["grid"]
    learned = max((v[metric], k) for k, v in grid.items() if k != "untuned")
    if choice["chosen"] == "untuned":
        return (f"verifier: kept the untuned ranking; on held-out turns it {what} at {grid['untuned'][metric]:.3f}, "
                f"the best learned one ({learned[1]}) at {learned[0]:.3f}")
    return (f"verifier: learned ranking ({choice['chosen']}); on held-out turns it {what} at "
            f"{grid[choice['chosen']][metric]:.3f} vs {grid['untuned'][metric]:.3f} for the untuned ranking")


def _l2_name(l2: float | None) -> str:
    return "untuned" if l2 is None else f"l2={l2:g}"
