"""How many project modules a Debugger request and a `spade protocol` run pass through (issue 29's measure).

    .venv/bin/python benchmarks/module_count.py [--root DIR] [--model NAME] [--n-aug 16] [--list]

Two figures per workload, over the files under `spade_engine/` and `pages/` of the checkout `--root` (default: this
one; give a `git worktree` of an older commit to measure it with this same script):

- imported: distinct project modules in `sys.modules` after the run;
- called: distinct project files whose code ran outside an import (a `sys.setprofile` / `threading.setprofile`
  "call" event whose stack holds no module body being imported): module bodies that only define things do not
  count, the page script run by Streamlit does.

Workloads, each in a fresh process (offline, CPU, private caches, `SPADE_PREFETCH=0` so that only the request's
own work is seen):

- Debugger: one `streamlit.testing.v1.AppTest` run of `app.py`, whose default page is the Debugger, on the
  checkout's default model (or `--model`) with `--n-aug` calibration views;
- protocol: `spade protocol --model testbed_resnet --trojan 2 --clean 2 --columns Dense SPADE-sweep --n-aug 8
  --steps 8 --serial` (every saliency method) through `spade_engine.cli.main`, the same call before and after
  the `spade` CLI became a package.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
PROTOCOL_ARGS = ["--model", "testbed_resnet", "--trojan", "2", "--clean", "2", "--columns", "Dense", "SPADE-sweep",
                 "--n-aug", "8", "--steps", "8", "--serial", "--threads", "1"]  # fmt: skip


class CallRecorder:
    """A profile function that records the project files whose code is called outside an import."""

    def __init__(self, roots: list[Path]):
        self.prefixes = tuple(str(r) + os.sep for r in roots)
        self.files: set[str] = set()
        self._done: set = set()  # code objects already counted, or outside the project

    def __call__(self, frame, event: str, arg) -> None:
        if event != "call" or frame.f_code in self._done:
            return
        code = frame.f_code
        if not code.co_filename.startswith(self.prefixes):
            self._done.add(code)
        elif not _importing(frame):
            self.files.add(code.co_filename)
            self._done.add(code)

    def __enter__(self) -> CallRecorder:
        threading.setprofile(self)
        sys.setprofile(self)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(None)
        threading.setprofile(None)


def _importing(frame) -> bool:
    """Whether a module body being imported is on `frame`'s stack (a script run as `__main__` is not an import)."""
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            name = frame.f_globals.get("__name__")
            module = sys.modules.get(name)
            if name != "__main__" and module is not None and module.__dict__ is frame.f_globals:
                return True
        frame = frame.f_back
    return False


def imported_files(roots: list[Path]) -> set[str]:
    """Files of the modules in `sys.modules` under `roots` (Streamlit's `__main__` script modules left out)."""
    prefixes = tuple(str(r) + os.sep for r in roots)
    return {
        m.__file__
        for name, m in list(sys.modules.items())
        if name != "__main__" and (getattr(m, "__file__", None) or "").startswith(prefixes)
    }


def run_debugger(root: Path, model: str | None, n_aug: int) -> None:
    """One AppTest run of `root/app.py` (the Debugger, its default page); fails on a page exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(root / "app.py"), default_timeout=1800)
    at.session_state["debugger.n_aug"] = n_aug  # keys.scoped(keys.DEBUGGER, keys.N_AUG), the same before and after
    if model:
        at.session_state["shared.model"] = model  # keys.MODEL
    at.run()
    if at.exception:
        raise SystemExit(f"the Debugger raised: {at.exception}")


def run_protocol(out: Path) -> None:
    """`spade protocol` (`PROTOCOL_ARGS`, rows to `out`) in this process."""
    from spade_engine import cli

    status = cli.main(["protocol", *PROTOCOL_ARGS, "--out", str(out / "rows.csv")])
    if status:
        raise SystemExit(f"spade protocol exited with {status}")


def measure(root: Path, workload: str, model: str | None, n_aug: int) -> dict:
    """Run `workload` ("debugger" or "protocol") on the checkout `root` in this process, under a `CallRecorder`.

    Returns:
        {"imported": [files], "called": [files]}, paths relative to `root`.
    """
    os.chdir(root)
    sys.path.insert(0, str(root))
    roots = [root / "spade_engine", root / "pages"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(SPADE_OFFLINE="1", SPADE_DEVICE="cpu", SPADE_PREFETCH="0", SPADE_CACHE_DIR=f"{tmp}/cache")
        with CallRecorder(roots) as recorder:
            if workload == "debugger":
                run_debugger(root, model, n_aug)
            else:
                run_protocol(Path(tmp))
    import spade_engine

    assert Path(spade_engine.__file__).is_relative_to(root), f"measured {spade_engine.__file__}, not {root}"
    return {"imported": _relative(imported_files(roots), root), "called": _relative(recorder.files, root)}


def _relative(files: set[str], root: Path) -> list[str]:
    return sorted(str(Path(f).relative_to(root)) for f in files)


def child(args: argparse.Namespace, workload: str) -> dict:
    """`measure` in a fresh Python process (nothing imported or cached before it)."""
    cmd = [sys.executable, __file__, "--root", str(args.root), "--n-aug", str(args.n_aug), "--measure", workload]
    cmd += ["--model", args.model] if args.model else []
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=HERE, help="the checkout to measure (default: this one)")
    ap.add_argument("--model", default=None, help="the Debugger's model (default: the checkout's default model)")
    ap.add_argument("--n-aug", type=int, default=16, help="the Debugger's calibration views")
    ap.add_argument("--list", action="store_true", help="also list the files")
    ap.add_argument("--measure", choices=["debugger", "protocol"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.root = args.root.resolve()
    if args.measure:
        print(json.dumps(measure(args.root, args.measure, args.model, args.n_aug)))
        return
    commit = subprocess.run(["git", "-C", str(args.root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    print(f"checkout {args.root} at {commit}; modules under spade_engine/ and pages/")
    print(f"{'workload':<40} {'imported':>8} {'called':>8}")
    for workload, label in (("debugger", f"Debugger request ({args.model or 'default model'})"),
                            ("protocol", "spade protocol (testbed_resnet, 2+2)")):  # fmt: skip
        found = child(args, workload)
        print(f"{label:<40} {len(found['imported']):>8} {len(found['called']):>8}", flush=True)
        if args.list:
            for kind in ("imported", "called"):
                print(f"  {kind}: " + " ".join(found[kind]))


if __name__ == "__main__":
    main()
