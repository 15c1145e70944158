"""Builds the pure-Python wheel of `wheel-src/digits_helpers` with the standard library only
(no pip, no network), reproducibly: the same source gives the same bytes.

    python3 examples/digits/make_wheel.py examples/digits/solutions/bundled-wheel/wheels

A wheel is a zip: the package, and a `<name>-<version>.dist-info` folder with METADATA, WHEEL,
top_level.txt and RECORD (every file's sha256 and size) — PEP 427.
"""

import base64
import hashlib
import os
import sys
import zipfile

NAME, VERSION = "digits_helpers", "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "wheel-src")
DATE = (2026, 1, 1, 0, 0, 0)


def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def main(dest):
    files = []
    for root, _, names in sorted(os.walk(os.path.join(SRC, NAME))):
        for n in sorted(names):
            if n.endswith(".py"):
                full = os.path.join(root, n)
                with open(full, "rb") as f:
                    files.append((os.path.relpath(full, SRC).replace(os.sep, "/"), f.read()))
    info = f"{NAME}-{VERSION}.dist-info"
    files += [
        (f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
         "Summary: Helpers for the Holdout digits example\n".encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: holdout make_wheel.py\n"
         b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{info}/top_level.txt", f"{NAME}\n".encode()),
    ]
    record = "\n".join(record_line(p, d) for p, d in files) + f"\n{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    os.makedirs(dest, exist_ok=True)
    out = os.path.join(dest, f"{NAME}-{VERSION}-py3-none-any.whl")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            entry = zipfile.ZipInfo(path, DATE)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
