"""Write the digits challenge's data folder from scikit-learn's bundled digits set.

Usage: python3 make_data.py DEST

Layout written under DEST (what the organiser uploads; only inputs/ is ever mounted into a
participant's run, labels.csv stays on the host):
    inputs/train.csv         id, p0..p63, label   (~60% of the 1,797 images)
    inputs/test.csv          id, p0..p63          (the other ~40%, the private test set)
    labels.csv               id, label            (answers for inputs/test.csv; private)
    sample/inputs/train.csv  a small public sample drawn from the *training* rows only,
    sample/inputs/test.csv   so it never reveals a private test row or label
    sample/labels.csv

The split is deterministic (fixed seed), so every run of this script writes identical files.
Ids are a random permutation of 1..1797 rather than the dataset's row numbers: the bundled set
is ordered almost cyclically by digit, so row numbers would leak the label.
Runs inside holdout-python:1 (see make_data.sh), so the host needs no scikit-learn.
"""

import csv
import os
import sys

import numpy as np
from sklearn.datasets import load_digits

SEED = 2026
TEST_FRACTION = 0.4
SAMPLE_TRAIN_ROWS = 200
SAMPLE_TEST_ROWS = 100
PIXELS = [f"p{i}" for i in range(64)]


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main(dest):
    digits = load_digits()
    x = digits.data.astype(int)
    y = digits.target.astype(int)
    n = len(y)

    rng = np.random.RandomState(SEED)
    ids = rng.permutation(n) + 1  # ids[i] is the public id of image i
    order = rng.permutation(n)
    n_test = int(round(n * TEST_FRACTION))
    test_rows = sorted(order[:n_test], key=lambda i: ids[i])
    train_rows = sorted(order[n_test:], key=lambda i: ids[i])

    def features(i):
        return [int(ids[i])] + x[i].tolist()

    write_csv(os.path.join(dest, "inputs", "train.csv"), ["id"] + PIXELS + ["label"],
              (features(i) + [int(y[i])] for i in train_rows))
    write_csv(os.path.join(dest, "inputs", "test.csv"), ["id"] + PIXELS,
              (features(i) for i in test_rows))
    write_csv(os.path.join(dest, "labels.csv"), ["id", "label"],
              ((int(ids[i]), int(y[i])) for i in test_rows))

    # The public sample comes from training rows only: disjoint from the private test set.
    picked = rng.permutation(len(train_rows))[: SAMPLE_TRAIN_ROWS + SAMPLE_TEST_ROWS]
    sample_train = sorted((train_rows[k] for k in picked[:SAMPLE_TRAIN_ROWS]), key=lambda i: ids[i])
    sample_test = sorted((train_rows[k] for k in picked[SAMPLE_TRAIN_ROWS:]), key=lambda i: ids[i])
    write_csv(os.path.join(dest, "sample", "inputs", "train.csv"), ["id"] + PIXELS + ["label"],
              (features(i) + [int(y[i])] for i in sample_train))
    write_csv(os.path.join(dest, "sample", "inputs", "test.csv"), ["id"] + PIXELS,
              (features(i) for i in sample_test))
    write_csv(os.path.join(dest, "sample", "labels.csv"), ["id", "label"],
              ((int(ids[i]), int(y[i])) for i in sample_test))

    print(f"digits: {len(train_rows)} train, {len(test_rows)} test, sample "
          f"{len(sample_train)}+{len(sample_test)} rows written to {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_data.py DEST")
    main(sys.argv[1])
