"""Installs a folder of wheels into this image's Python, offline (`holdout image extend`).

Run as root inside `docker build` with networking off:

    python3 install.py WHEELS_DIR [REQUIREMENTS_FILE]

With pip in the image: `pip install --no-index --find-links WHEELS_DIR` (the requirements, or
every wheel), so pip resolves dependencies among the wheels and never looks at an index.
Without pip (holdout-python:1 has none): each selected wheel is unpacked into the first
site-packages folder (a wheel is a zip laid out for site-packages: its packages and its
*.dist-info go there, *.data/purelib|platlib too, *.data/scripts to <prefix>/bin), after its
tags are checked against this interpreter. Then every selected wheel must be present and
compatible, and requirements may only name a project (`name` or `name==version`): there is no
resolver, so dependencies must be listed (or shipped as wheels, without requirements).
"""

import importlib.util
import os
import platform
import re
import site
import subprocess
import sys
import sysconfig
import zipfile


def fail(message):
    print(f"holdout-install: {message}", file=sys.stderr)
    sys.exit(2)


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_wheel_name(file_name):
    parts = file_name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        fail(f"{file_name} is not a wheel file name (name-version[-build]-python-abi-platform.whl)")
    return {
        "project": canonical(parts[0]),
        "version": parts[1],
        "python": parts[-3].split("."),
        "abi": parts[-2].split("."),
        "platform": parts[-1].split("."),
    }


def compatible(tags):
    major, minor = sys.version_info[:2]
    ours = {f"py{major}", f"py{major}{minor}", f"cp{major}{minor}"}
    stable = [t for t in tags["python"] if re.fullmatch(rf"cp{major}\d+", t)]
    python_ok = bool(ours & set(tags["python"])) or (
        "abi3" in tags["abi"] and any(int(t[len(f"cp{major}"):]) <= minor for t in stable)
    )
    abi_ok = bool({"none", "abi3", f"cp{major}{minor}"} & set(tags["abi"]))
    machine = platform.machine()
    platform_ok = any(
        p == "any" or (p.startswith(("manylinux", "musllinux", "linux")) and p.endswith(machine))
        for p in tags["platform"]
    )
    return python_ok and abi_ok and platform_ok


def requirements(path):
    wanted = {}
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([A-Za-z0-9._+!-]+))?", line)
            if not m:
                fail(f"requirement {line!r} needs pip (this image has none): use `name` or `name==version`")
            wanted[canonical(m.group(1))] = m.group(2)
    return wanted


def safe_path(name):
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        fail(f"wheel entry {name!r} escapes its folder")
    return name


def unpack(wheel_path, target, prefix):
    with zipfile.ZipFile(wheel_path) as z:
        for info in z.infolist():
            name = safe_path(info.filename)
            parts = name.split("/")
            dest_root, rel = target, name
            if parts[0].endswith(".data") and len(parts) > 2:
                kind, rel = parts[1], "/".join(parts[2:])
                if kind in ("purelib", "platlib"):
                    dest_root = target
                elif kind == "scripts":
                    dest_root = os.path.join(prefix, "bin")
                elif kind == "data":
                    dest_root = prefix
                else:
                    continue  # headers: not needed to import anything
            dest = os.path.join(dest_root, rel)
            if info.is_dir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as out:
                out.write(src.read())
            # Readable by the sandbox user; scripts (and anything marked so) executable.
            executable = (info.external_attr >> 16) & 0o111 or dest_root.endswith("/bin")
            os.chmod(dest, 0o755 if executable else 0o644)
    for root, dirs, _ in os.walk(target):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)


def main():
    if len(sys.argv) not in (2, 3):
        fail("usage: install.py WHEELS_DIR [REQUIREMENTS_FILE]")
    wheels_dir = sys.argv[1]
    req = sys.argv[2] if len(sys.argv) == 3 else None
    wheels = sorted(f for f in os.listdir(wheels_dir) if f.endswith(".whl"))
    if not wheels:
        fail(f"no .whl file in {wheels_dir}")

    if importlib.util.find_spec("pip") is not None:
        args = [sys.executable, "-m", "pip", "install", "--no-index", "--no-cache-dir",
                "--disable-pip-version-check", "--find-links", wheels_dir]
        args += ["-r", req] if req else [os.path.join(wheels_dir, w) for w in wheels]
        print("holdout-install: " + " ".join(args), flush=True)
        sys.exit(subprocess.call(args))

    wanted = requirements(req) if req else None
    by_project = {}
    for w in wheels:
        tags = parse_wheel_name(w)
        by_project.setdefault(tags["project"], []).append((w, tags))
    selected = []
    for project, candidates in sorted(by_project.items()):
        if wanted is not None and project not in wanted:
            continue
        pin = wanted.get(project) if wanted else None
        usable = [(w, t) for w, t in candidates if compatible(t) and (pin is None or t["version"] == pin)]
        if not usable:
            names = ", ".join(w for w, _ in candidates)
            fail(f"no wheel of {project} fits Python {platform.python_version()} on {platform.machine()}"
                 + (f" at version {pin}" if pin else "") + f" (have: {names})")
        if len(usable) > 1:
            fail(f"more than one usable wheel of {project}: {', '.join(w for w, _ in usable)}")
        selected.append(usable[0][0])
    if wanted is not None:
        missing = sorted(set(wanted) - set(by_project))
        if missing:
            fail(f"no wheel for {', '.join(missing)} in {wheels_dir}")

    target = site.getsitepackages()[0]
    if target not in sys.path:
        fail(f"{target} is not on this interpreter's sys.path")
    prefix = sysconfig.get_config_var("prefix") or "/usr"
    if prefix == "/usr":
        prefix = "/usr/local"
    os.makedirs(target, exist_ok=True)
    for w in selected:
        unpack(os.path.join(wheels_dir, w), target, prefix)
        print(f"holdout-install: unpacked {w} into {target}", flush=True)


if __name__ == "__main__":
    main()
