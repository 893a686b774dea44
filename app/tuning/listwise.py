"""Listwise training of the step verifier: learn to pick the good candidate among a step's candidates.

A review says something about a *choice*: the engine kept one of N candidates.  An
editor's +1 (or 0) says the kept one was right; a -1 with a correction that quotes one
of the step's sentences says which one should have been kept (a -1 alone is a label, not
a choice).  A conditional-logit model (softmax over the step's candidates, L2
regularised, fitted with L-BFGS) learns weights that pick what the reviews preferred,
in the situation the engine is in at answer time — choosing among siblings — rather
than from kept candidates alone, which are nearly all the untuned scorer's favourite.
The same weights (plus an intercept) also fit the reviewed candidates' labels, so the
score reads as P(good) for the review queue; the result is an ordinary `LinearModel`.
All lists are stacked in one matrix, so a fit over thousands of reviews takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from app.tuning.linear import LinearModel


@dataclass
class CandidateList:
    rows: list[dict[str, float]]        # features of each candidate of one step
    target: list[int]                   # indices of the preferred candidate(s)
    exact: bool                         # True: one preferred candidate; False: any of the set
    weight: float = 1.0


def _matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.array([[float(r.get(n, 0.0)) for n in names] for r in rows], dtype=np.float64)


def fit_listwise(lists: Sequence[CandidateList], reviewed: Sequence[tuple[Mapping[str, float], int, float]],
                 *, l2: float | None = 1.0, anchor: str | None = None,
                 calibrate: Sequence[str] = ()) -> LinearModel:
    """Fit one weight vector on both objectives: pick the preferred candidate of each list
    (softmax over siblings) and give the reviewed candidates their labels (logistic, with an
    intercept), so the score ranks siblings and reads as P(good).

    With ``anchor`` (a feature that already ranks well untrained), the weights are first fitted
    on that feature alone, and the full fit is regularised towards that solution instead of
    towards zero: few reviews leave the untrained ranking as it is, more reviews move it.
    ``calibrate`` names features that are the same for every sibling (the procedure step): they
    are fitted with the anchor, so P(good) can differ per step without changing any ranking.
    ``l2=None`` stops there: the anchor-only model ranks exactly as the anchor does."""
    from scipy.optimize import minimize

    usable = [cl for cl in lists if cl is not None and len(cl.rows) > 1 and cl.target
              and len(cl.target) < len(cl.rows)]
    names = sorted({k for cl in usable for r in cl.rows for k in r} | {k for r, _, _ in reviewed for k in r})
    if not names or not reviewed:
        raise ValueError("no reviewed candidates to learn from")
    if l2 is None and anchor not in names:
        raise ValueError(f"an anchor-only fit needs the anchor feature {anchor!r}")
    points = _matrix([r for r, _, _ in reviewed], names)
    cand = _matrix([r for cl in usable for r in cl.rows], names) if usable else np.zeros((0, len(names)))
    stacked = np.vstack([points, cand])
    mean = stacked.mean(axis=0)
    scale = stacked.std(axis=0)
    scale[scale < 1e-9] = 1.0
    # all lists' candidates in one matrix; `starts` opens each list's segment
    xc = (cand - mean) / scale
    sizes = np.array([len(cl.rows) for cl in usable], dtype=int)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int) if usable else np.zeros(0, dtype=int)
    seg = np.repeat(np.arange(len(usable)), sizes)
    mask = np.concatenate([np.isin(np.arange(len(cl.rows)), cl.target) for cl in usable]) if usable \
        else np.zeros(0, dtype=bool)
    list_w = np.array([cl.weight for cl in usable], dtype=np.float64)
    xp = (points - mean) / scale
    y = np.array([label for _, label, _ in reviewed], dtype=np.float64)
    row_w = np.array([weight for _, _, weight in reviewed], dtype=np.float64)
    total = list_w.sum() + row_w.sum()

    center = np.zeros(len(names))
    free = np.ones(len(names) + 1, dtype=bool)
    penalty = 0.0 if l2 is None else l2

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        value = 0.5 * penalty * (w - center) @ (w - center) / total
        gw, gb = penalty * (w - center) / total, 0.0
        if len(usable):
            z = xc @ w
            z = z - np.maximum.reduceat(z, starts)[seg]
            e = np.exp(z)
            p = e / np.add.reduceat(e, starts)[seg]
            q = p * mask
            s = np.maximum(np.add.reduceat(q, starts), 1e-300)
            value -= float(list_w @ np.log(s)) / total
            gw = gw - xc.T @ (list_w[seg] * (q / s[seg] - p)) / total
        zp = np.clip(xp @ w + b, -35, 35)
        prob = 1.0 / (1.0 + np.exp(-zp))
        value -= float(row_w @ (y * np.log(prob + 1e-12) + (1 - y) * np.log(1 - prob + 1e-12))) / total
        gw = gw + xp.T @ (row_w * (prob - y)) / total
        gb += float(row_w @ (prob - y)) / total
        return value, np.append(gw, gb) * free

    theta = np.zeros(len(names) + 1)
    if anchor in names:
        free[:] = False
        free[[names.index(n) for n in (anchor, *calibrate) if n in names] + [len(names)]] = True
        theta = minimize(loss, theta, jac=True, method="L-BFGS-B", options={"maxiter": 200}).x
        center = theta[:-1].copy()
        free[:] = True
    if l2 is not None:
        theta = minimize(loss, theta, jac=True, method="L-BFGS-B", options={"maxiter": 400}).x
    return LinearModel(list(names), mean.tolist(), scale.tolist(), theta[:-1].tolist(), float(theta[-1]),
                       n_train=len(reviewed), positive_rate=float(y.mean()), kind="listwise+pointwise",
                       extra={"lists": len(usable), "anchor": anchor if anchor in names else None,
                              "l2": l2})
