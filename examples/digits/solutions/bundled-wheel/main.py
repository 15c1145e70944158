"""Ships its own package as a wheel inside the archive and installs it at start, offline:
expected verdict SCORED, with exactly the `good` solution's predictions.

The pattern for any pure-Python or manylinux wheel the runtime image lacks:

  - put the .whl files in `wheels/` next to main.py (build them beforehand, on a machine with
    network: `pip wheel --no-deps PACKAGE -w wheels/`, or `pip download --only-binary=:all:
    --platform manylinux2014_x86_64 --python-version 3.11 PACKAGE -d wheels/`);
  - at start, install them into a writable folder under /tmp (the root filesystem is
    read-only; /tmp is a size-capped scratch, so mind `scratch_bytes`) with no index: pip when
    the image has it, else unzip them (a wheel is a zip laid out for site-packages);
  - put that folder first on sys.path, then import.

There is no network in a run: nothing but what the archive holds can be installed.
"""

import glob
import importlib.util
import os
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
WHEELS = os.path.join(HERE, "wheels")
TARGET = "/tmp/pylib"


def install_bundled_wheels():
    wheels = sorted(glob.glob(os.path.join(WHEELS, "*.whl")))
    if importlib.util.find_spec("pip") is not None:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
             "--disable-pip-version-check", "--target", TARGET, *wheels],
            check=True,
        )
    else:
        # holdout-python:1 has no pip: a wheel unpacks as is (pure-Python and manylinux
        # wheels for this Python need no build step).
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                z.extractall(TARGET)
    sys.path.insert(0, TARGET)


install_bundled_wheels()

import pandas as pd  # noqa: E402  (after the install, like the bundled package)

import digits_helpers  # noqa: E402

data = os.environ.get("HOLDOUT_DATA", "/data")
output = os.environ.get("HOLDOUT_OUTPUT", "/output")

train = pd.read_csv(os.path.join(data, "train.csv"))
test = pd.read_csv(os.path.join(data, "test.csv"))
predictions = digits_helpers.fit_predict(train, test)
pd.DataFrame({"id": test["id"], "label": predictions}).to_csv(
    os.path.join(output, "predictions.csv"), index=False
)
print(f"bundled-wheel: digits_helpers {digits_helpers.__version__} from "
      f"{os.path.dirname(digits_helpers.__file__)}, predicted {len(test)}")
