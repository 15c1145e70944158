"""Imports every top-level module of the wheels installed in this image, in a locked-down run
(`holdout image extend`). Arguments: one `project==version:module,module:required|optional`
per wheel; an optional wheel (not asked for by the requirements) is checked only when pip
installed it as a dependency. Exits 3 naming the first module that does not import.
"""

import importlib
import importlib.metadata
import sys

for arg in sys.argv[1:]:
    spec, modules, need = arg.rsplit(":", 2)
    project, version = spec.split("==", 1)
    try:
        installed = importlib.metadata.version(project)
    except importlib.metadata.PackageNotFoundError:
        if need == "optional":
            print(f"skipped {project}: not installed", flush=True)
            continue
        print(f"holdout-import-failed {project} {project} is not installed", flush=True)
        sys.exit(3)
    if installed != version:
        print(f"holdout-import-failed {project} {project} {installed} is found first, not {version}", flush=True)
        sys.exit(3)
    for module in filter(None, modules.split(",")):
        try:
            m = importlib.import_module(module)
        except BaseException as e:  # an import can fail in any way, SystemExit included
            print(f"holdout-import-failed {module} {type(e).__name__}: {e}", flush=True)
            sys.exit(3)
        print(f"imported {module} from {getattr(m, '__file__', None) or 'a namespace'}", flush=True)
print("holdout-import-check-passed", flush=True)
