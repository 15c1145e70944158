"""Fails with an uncaught exception after reading its input: expected verdict RUNTIME_ERROR."""

import os

data = os.environ.get("HOLDOUT_DATA", "/data")
with open(os.path.join(data, "train.csv")) as f:
    header = f.readline()

raise RuntimeError(f"deliberate crash after reading a {len(header)}-character header")
