"""A standardised logistic-regression model over named features, stored as plain JSON.

Both learned parts of a snapshot (step verifier, retrieval re-ranker) are this
model: scikit-learn fits it, numpy applies it, and the artefact is a readable
JSON file of feature names, scaling and weights (no pickles to trust, weights a
lab member can inspect and compare between snapshots).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


@dataclass
class LinearModel:
    feature_names: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    n_train: int = 0
    positive_rate: float = 0.5
    kind: str = "logistic"
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------ applying
    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        x = np.zeros((len(rows), len(self.feature_names)), dtype=float)
        for i, row in enumerate(rows):
            for j, name in enumerate(self.feature_names):
                value = row.get(name, 0.0)
                x[i, j] = float(value) if value is not None and math.isfinite(float(value)) else 0.0
        return x

    def decision(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        x = (self.matrix(rows) - np.asarray(self.mean)) / np.asarray(self.scale)
        return x @ np.asarray(self.coef) + self.intercept

    def predict_proba(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        z = np.clip(self.decision(rows), -35, 35)
        return 1.0 / (1.0 + np.exp(-z))

    def weights(self) -> dict[str, float]:
        """Weight per feature in standard-deviation units (comparable between features)."""
        return {n: round(float(c), 4) for n, c in zip(self.feature_names, self.coef)}

    # ------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, float]], labels: Sequence[int], *,
            c: float = 1.0, sample_weight: Sequence[float] | None = None) -> "LinearModel":
        """Fit on feature dicts and 0/1 labels; one-class data gives a constant-prior model."""
        if not rows:
            raise ValueError("no training examples: collect some reviews first")
        names = sorted({k for row in rows for k in row})
        y = np.asarray(labels, dtype=int)
        positive_rate = float(y.mean())
        probe = cls(names, [0.0] * len(names), [1.0] * len(names), [0.0] * len(names), 0.0)
        x = probe.matrix(rows)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-9] = 1.0
        if len(set(y.tolist())) < 2:
            p = min(max(positive_rate, 1e-3), 1 - 1e-3)
            return cls(names, mean.tolist(), scale.tolist(), [0.0] * len(names),
                       math.log(p / (1 - p)), n_train=len(rows), positive_rate=positive_rate,
                       kind="constant")
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        clf.fit((x - mean) / scale, y, sample_weight=None if sample_weight is None
                else np.asarray(sample_weight, dtype=float))
        return cls(names, mean.tolist(), scale.tolist(), clf.coef_[0].tolist(),
                   float(clf.intercept_[0]), n_train=len(rows), positive_rate=positive_rate)

    # ------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        return {"kind": self.kind, "feature_names": self.feature_names, "mean": self.mean,
                "scale": self.scale, "coef": self.coef, "intercept": self.intercept,
                "n_train": self.n_train, "positive_rate": self.positive_rate, "extra": self.extra}

    @classmethod
    def from_dict(cls, data: Mapping) -> "LinearModel":
        return cls(list(data["feature_names"]), list(data["mean"]), list(data["scale"]),
                   list(data["coef"]), float(data["intercept"]), int(data.get("n_train", 0)),
                   float(data.get("positive_rate", 0.5)), data.get("kind", "logistic"),
                   dict(data.get("extra", {})))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "LinearModel":
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
