#!/usr/bin/env python3
"""Generate tests/fixtures/scoring/sklearn_reference.json: metric values computed by scikit-learn.

The Rust scoring module must match every value within 1e-9 (src/scoring/tests.rs loads the
fixture). Cases cover random sizes, string and integer labels, and edge cases: a class absent
from the predictions, a predicted class absent from the truth, all-equal scores, perfect and
worst predictions, ties, and probabilities at the clipping bounds.

It also pins the public/private split function (documented in src/scoring/split.rs) with a
Python copy, so both languages agree on it.

Usage: pip install scikit-learn numpy && python3 scripts/sklearn_reference.py
The output is deterministic for a given scikit-learn version (seeded generator).
"""

import json
import os
import sys
import warnings

import numpy as np
import sklearn
from sklearn import metrics as skm

EPS = 1e-15
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "scoring",
                   "sklearn_reference.json")
MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def hash_id(ident, seed):
    data = ident.encode("utf-8")
    h = seed
    for i in range(0, len(data), 8):
        w = int.from_bytes(data[i:i + 8].ljust(8, b"\0"), "little")
        h = mix64(((h + GAMMA) & MASK) ^ w)
    return mix64(((h + GAMMA) & MASK) ^ len(data))


def split_position(ident, seed):
    return (hash_id(ident, seed) >> 11) * (1.0 / (1 << 53))


def as_text(values):
    return [str(v) for v in values]


def classification_case(name, y_true, y_pred):
    """y_true and y_pred as label arrays (ints or strings)."""
    return {
        "name": name,
        "kind": "classes",
        "y_true": as_text(y_true),
        "y_pred": as_text(y_pred),
        "expected": {
            "accuracy": skm.accuracy_score(y_true, y_pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
            "f1_macro": skm.f1_score(y_true, y_pred, average="macro"),
        },
    }


def binary_case(name, y_true, scores, positive, threshold=None):
    """y_true labels of two classes; scores for `positive`, in [0, 1] unless `unbounded`."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=float)
    y_bin = (y_true == positive).astype(int)
    expected = {"roc_auc": skm.roc_auc_score(y_bin, scores)}
    if scores.min() >= 0 and scores.max() <= 1:
        clipped = np.clip(scores, EPS, 1 - EPS)
        expected["log_loss"] = skm.log_loss(y_bin, clipped, labels=[0, 1])
    if threshold is not None:
        classes = sorted(set(y_true.tolist()), key=lambda v: (str(type(v)), v))
        negative = [c for c in classes if c != positive][0]
        y_pred = np.where(scores >= threshold, positive, negative)
        expected["accuracy"] = skm.accuracy_score(y_true, y_pred)
        expected["balanced_accuracy"] = skm.balanced_accuracy_score(y_true, y_pred)
        expected["f1_macro"] = skm.f1_score(y_true, y_pred, average="macro")
    return {
        "name": name,
        "kind": "scores",
        "y_true": as_text(y_true.tolist()),
        "y_pred": [repr(float(s)) for s in scores],
        "positive_label": str(positive),
        "threshold": threshold,
        "expected": expected,
    }


def regression_case(name, y_true, y_pred):
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    return {
        "name": name,
        "kind": "values",
        "y_true": [repr(float(v)) for v in y_true],
        "y_pred": [repr(float(v)) for v in y_pred],
        "expected": {
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
            "mae": skm.mean_absolute_error(y_true, y_pred),
            "r2": skm.r2_score(y_true, y_pred),
        },
    }


def main():
    # The edge cases trigger sklearn's "classes not in y_true" and similar warnings on purpose.
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(20240604)
    cases = []

    # Random multiclass, integer and string labels, noisy predictions.
    for i in range(40):
        n = int(rng.integers(2, 800))
        k = int(rng.integers(2, 7))
        strings = i % 2 == 1
        pool = [f"c{j}" for j in range(k)] if strings else list(range(k))
        y_true = [pool[j] for j in rng.integers(0, k, n)]
        noise = rng.random(n) < rng.random()
        y_pred = [pool[int(rng.integers(0, k))] if flip else t for t, flip in zip(y_true, noise)]
        cases.append(classification_case(f"random_classes_{i}", y_true, y_pred))

    # Edge cases for class metrics.
    cases.append(classification_case("perfect", ["a", "b", "c", "a"], ["a", "b", "c", "a"]))
    cases.append(classification_case("worst", [0, 1, 0, 1], [1, 0, 1, 0]))
    cases.append(classification_case("class_absent_from_predictions", [0, 1, 2, 2, 1, 0], [0, 1, 1, 1, 1, 0]))
    cases.append(classification_case("predicted_class_absent_from_truth", ["x", "y", "x", "y"], ["x", "z", "z", "y"]))
    cases.append(classification_case("single_true_class", [3, 3, 3, 3], [3, 1, 3, 2]))
    cases.append(classification_case("all_one_prediction", ["a", "b", "c", "b", "a"], ["b"] * 5))

    # Random binary scores, with ties from rounding; integer and string labels.
    for i in range(40):
        n = int(rng.integers(2, 800))
        strings = i % 2 == 1
        neg, pos = ("no", "yes") if strings else (0, 1)
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            y[0] = 1 - y[0]
        y_true = [pos if v else neg for v in y]
        scores = np.clip(0.5 * y + rng.normal(0.25, 0.3, n), 0, 1)
        if i % 3 == 0:
            scores = np.round(scores, 1)  # many ties
        threshold = float(np.round(rng.uniform(0.2, 0.8), 3)) if i % 2 == 0 else None
        cases.append(binary_case(f"random_binary_{i}", y_true, scores, pos, threshold))

    # ROC AUC on unbounded scores (no log loss).
    for i in range(6):
        n = int(rng.integers(2, 500))
        y = rng.integers(0, 2, n)
        y[0], y[-1] = 0, 1
        scores = rng.normal(0, 50, n) + 10 * y
        cases.append(binary_case(f"unbounded_scores_{i}", y.tolist(), scores, 1))

    # Binary edge cases.
    cases.append(binary_case("all_equal_scores", [0, 1, 1, 0, 1], [0.5] * 5, 1, 0.5))
    cases.append(binary_case("perfect_scores", ["b", "a", "b", "a"], [0.9, 0.1, 0.8, 0.2], "b", 0.5))
    cases.append(binary_case("worst_scores", [1, 0, 1, 0], [0.0, 1.0, 0.0, 1.0], 1, 0.5))
    cases.append(binary_case("clipped_extremes", [1, 0, 1, 0], [1.0, 0.0, 0.0, 1.0], 1))
    cases.append(binary_case("ties_across_classes", [0, 0, 1, 1, 0, 1], [0.3, 0.7, 0.7, 0.3, 0.5, 0.5], 1, 0.5))
    cases.append(binary_case("positive_is_the_smaller_label", [0, 1, 0, 1, 1], [0.8, 0.3, 0.6, 0.1, 0.4], 0, 0.5))
    cases.append(binary_case("threshold_on_a_tie", [0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], 1, 0.5))

    # Regression.
    for i in range(30):
        n = int(rng.integers(2, 800))
        scale = 10.0 ** int(rng.integers(-3, 4))
        y_true = rng.normal(0, scale, n)
        y_pred = y_true + rng.normal(0, scale * rng.random(), n)
        if i % 5 == 0:
            y_true = np.round(y_true)
            y_pred = np.round(y_pred)
        cases.append(regression_case(f"random_values_{i}", y_true, y_pred))
    cases.append(regression_case("perfect_values", [1.5, -2.0, 3.25], [1.5, -2.0, 3.25]))
    cases.append(regression_case("constant_truth_exact", [2.0, 2.0, 2.0], [2.0, 2.0, 2.0]))
    cases.append(regression_case("constant_truth_wrong", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
    cases.append(regression_case("negative_r2", [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]))

    split_vectors = []
    for seed in [0, 1, 42, 2**63 + 12345, MASK]:
        for ident in ["", "a", "abc", "12345678", "123456789", "id-000042", "ünïcødé", "x" * 40]:
            split_vectors.append({"id": ident, "seed": str(seed), "hash": str(hash_id(ident, seed)),
                                  "position": split_position(ident, seed)})

    fixture = {
        "generator": "scripts/sklearn_reference.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "tolerance": 1e-9,
        "cases": cases,
        "split_positions": split_vectors,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases and {len(split_vectors)} split positions to {os.path.normpath(OUT)}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
