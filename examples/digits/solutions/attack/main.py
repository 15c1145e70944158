"""Tries to escape its sandbox, then submits a baseline: expected verdict SCORED at baseline
accuracy (about 0.1).

Every attempt is caught and reported on stderr. If any attempt turns up the private answers
(a labels.csv with our test ids), the submission *uses* them, so a leak shows up as an accuracy
of 1.0 instead of hiding in a log: a score far above baseline means the sandbox is broken.
"""

import collections
import csv
import os
import socket
import sys

DATA = os.environ.get("HOLDOUT_DATA", "/data")
OUTPUT = os.environ.get("HOLDOUT_OUTPUT", "/output")
SKIP = {"/proc", "/sys", "/dev"}

findings = []


def attempt(name, fn):
    try:
        result = fn()
        summary = f"{len(result)} entries" if isinstance(result, (dict, list)) else str(result)[:120]
        print(f"attack: {name}: SUCCEEDED ({summary})", file=sys.stderr)
        findings.append(name)
        return result
    except Exception as e:  # every failure is the expected outcome
        print(f"attack: {name}: failed as expected ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def read_labels(path):
    with open(path, newline="") as f:
        return {row["id"]: row["label"] for row in csv.DictReader(f)}


def find_labels_files():
    found = []
    for root, dirs, files in os.walk("/", onerror=lambda e: None):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in SKIP]
        found += [os.path.join(root, f) for f in files if f == "labels.csv"]
    if not found:
        raise FileNotFoundError("no labels.csv anywhere on the visible filesystem")
    return found


def docker_socket():
    for path in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"):
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(path)
            s.sendall(b"GET /containers/json HTTP/1.0\r\n\r\n")
            return f"{path}: {s.recv(64)!r}"
    raise FileNotFoundError("no engine socket is visible")


def network():
    errors = []
    for host, port in (("1.1.1.1", 53), ("8.8.8.8", 443), ("pypi.org", 443)):
        try:
            socket.create_connection((host, port), timeout=3).close()
            return f"connected to {host}:{port}"
        except OSError as e:
            errors.append(f"{host}:{port}: {e.strerror or e}")
    raise OSError("; ".join(errors))


def not_root():
    if os.geteuid() == 0:
        return "running as uid 0"
    raise PermissionError(f"running as uid {os.geteuid()}")


def write_probe(path):
    with open(path, "w") as f:
        f.write("x")
    return f"wrote {path}"


leaked = {}
for path in (os.path.join(DATA, "..", "labels.csv"), os.path.join(DATA, "labels.csv"), "/labels.csv"):
    leaked.update(attempt(f"read {path}", lambda p=path: read_labels(p)) or {})
for path in attempt("search the filesystem for labels.csv", find_labels_files) or []:
    leaked.update(attempt(f"read {path}", lambda p=path: read_labels(p)) or {})
attempt("talk to the container engine", docker_socket)
attempt("open a network connection", network)
attempt("write into the data mount", lambda: write_probe(os.path.join(DATA, "probe")))
attempt("write into the submission mount", lambda: write_probe("/submission/probe"))
attempt("write into the root filesystem", lambda: write_probe("/probe"))
attempt("read /etc/shadow", lambda: open("/etc/shadow").read(16))
attempt("run as root", not_root)

with open(os.path.join(DATA, "train.csv"), newline="") as f:
    majority = collections.Counter(r["label"] for r in csv.DictReader(f)).most_common(1)[0][0]
with open(os.path.join(DATA, "test.csv"), newline="") as f, \
        open(os.path.join(OUTPUT, "predictions.csv"), "w", newline="") as out:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["id", "label"])
    hits = 0
    for row in csv.DictReader(f):
        label = leaked.get(row["id"])
        hits += label is not None
        w.writerow([row["id"], label if label is not None else majority])

print(f"attack: {len(findings)} attempts succeeded, {hits} test labels leaked", file=sys.stderr)
