"""How many project modules a Debugger request and a `spade protocol` run pass through (issue 29's measure).

    .venv/bin/python benchmarks/module_count.py [--root DIR] [--model NAME] [--n-aug 16] [--workloads ...] [--list]

Four figures per workload, over the files under `spade_engine/` and `pages/` of the checkout `--root` (default: this
one; give a `git worktree` of an older commit to measure it with this same script):

- imported: distinct project modules in `sys.modules` after the run;
- called: distinct project files whose code ran outside an import (a `sys.setprofile` / `threading.setprofile`
  "call" event whose stack holds no module body being imported): module bodies that only define things do not
  count, the page script run by Streamlit does;
- max depth: over every such call, the most distinct project modules on the Python stack at once (the frames from
  the called one out, `frame.f_back`), and the chain at the first call that reached it (project files outermost
  first, consecutive repeats collapsed; a file may recur when the path leaves and re-enters it);
- work depth: the median (and range) of that same count over every such call into `spade_engine/pruning/` or
  `spade_engine/saliency/`, i.e. how many modules a request crosses before it does real work.

A call into a file outside the project holds no more project modules than its nearest project caller, so only
calls into project files are walked; the counts are of stack frames, generators resumed included, and a call into a
Numba-compiled project function (reported with a frame of its own that has no caller) counts its Python callers.

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
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
PROTOCOL_ARGS = ["--model", "testbed_resnet", "--trojan", "2", "--clean", "2", "--columns", "Dense", "SPADE-sweep",
                 "--n-aug", "8", "--steps", "8", "--serial", "--threads", "1"]  # fmt: skip


class CallRecorder:
    """A profile function that records the project files whose code is called outside an import, and how many
    project modules are on the stack at each such call."""

    def __init__(self, roots: list[Path]):
        self.prefixes = tuple(str(r) + os.sep for r in roots)
        self.work_prefixes = tuple(str(roots[0] / d) + os.sep for d in ("pruning", "saliency"))
        self.files: set[str] = set()
        self.max_depth = 0
        self.max_chain: list[str] = []  # outermost first, consecutive repeats collapsed
        self.work_depths: Counter = Counter()  # distinct project modules on the stack -> calls into pruning/saliency
        self._outside: set = set()  # code objects outside the project

    def __call__(self, frame, event: str, arg) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code in self._outside:
            return
        filename = code.co_filename
        if not filename.startswith(self.prefixes):
            self._outside.add(code)
            return
        # Numba's dispatcher reports a call into a compiled function with a frame of its own that has no caller
        # (`f_back` None) and is not on the thread's stack: its callers are the thread's frames.
        top = sys._getframe(1) if frame.f_back is None else None
        chain = _project_stack(frame, self.prefixes, top if top is not frame else None)
        if chain is None:  # under an import
            return
        self.files.add(filename)
        depth = len(set(chain))
        if depth > self.max_depth:
            self.max_depth = depth
            self.max_chain = chain[::-1]
        if filename.startswith(self.work_prefixes):
            self.work_depths[depth] += 1

    def __enter__(self) -> CallRecorder:
        threading.setprofile(self)
        sys.setprofile(self)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(None)
        threading.setprofile(None)


def _project_stack(frame, prefixes: tuple[str, ...], caller=None) -> list[str] | None:
    """The project files on `frame`'s stack (`frame`, then `caller`'s stack where given, else `frame.f_back`'s),
    innermost first, consecutive repeats collapsed; None when a module body being imported is on it (a script run
    as `__main__` is not an import)."""
    chain: list[str] = []
    if caller is not None:
        chain.append(frame.f_code.co_filename)
        frame = caller
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and _imported_body(frame):
            return None
        filename = code.co_filename
        if filename.startswith(prefixes) and (not chain or chain[-1] != filename):
            chain.append(filename)
        frame = frame.f_back
    return chain


def _imported_body(frame) -> bool:
    """Whether `frame`, a `<module>` frame, is a module body being imported (not a script run as `__main__`)."""
    name = frame.f_globals.get("__name__")
    module = sys.modules.get(name)
    return name != "__main__" and module is not None and module.__dict__ is frame.f_globals


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
        {"imported": [files], "called": [files], "max_depth": n, "max_chain": [files, outermost first],
        "work_depths": {distinct modules on the stack: calls into pruning/ or saliency/}}, paths relative to `root`.
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
    return {
        "imported": _relative(imported_files(roots), root),
        "called": _relative(recorder.files, root),
        "max_depth": recorder.max_depth,
        "max_chain": [str(Path(f).relative_to(root)) for f in recorder.max_chain],
        "work_depths": {str(d): n for d, n in sorted(recorder.work_depths.items())},
    }


def _relative(files: set[str], root: Path) -> list[str]:
    return sorted(str(Path(f).relative_to(root)) for f in files)


def median(counts: dict[str, int]) -> float:
    """The median of the values `counts` holds (value -> how many times), the mean of the middle two for an even
    total; NaN for none."""
    values = sorted((int(v), n) for v, n in counts.items())
    total = sum(n for _, n in values)
    if not total:
        return float("nan")
    middle = [(total - 1) // 2, total // 2]  # 0-based ranks of the middle one or two
    found, seen = [], 0
    for value, n in values:
        found += [value] * sum(seen <= r < seen + n for r in middle)
        seen += n
    return sum(found) / 2


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
    ap.add_argument("--list", action="store_true", help="also list the files and the work depths' counts")
    ap.add_argument("--workloads", nargs="+", choices=["debugger", "protocol"], default=["debugger", "protocol"],
                    help="which workloads to run (default: both, one after the other)")  # fmt: skip
    ap.add_argument("--measure", choices=["debugger", "protocol"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.root = args.root.resolve()
    if args.measure:
        print(json.dumps(measure(args.root, args.measure, args.model, args.n_aug)))
        return
    commit = subprocess.run(["git", "-C", str(args.root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    print(f"checkout {args.root} at {commit}; modules under spade_engine/ and pages/")
    print(f"{'workload':<40} {'imported':>8} {'called':>8} {'max depth':>9} {'work depth: median (range, calls)':>34}")
    for workload, label in (("debugger", f"Debugger request ({args.model or 'default model'})"),
                            ("protocol", "spade protocol (testbed_resnet, 2+2)")):  # fmt: skip
        if workload not in args.workloads:
            continue
        found = child(args, workload)
        work = found["work_depths"]
        spread = f"{min(map(int, work))}-{max(map(int, work))}, {sum(work.values())}" if work else "none"
        print(f"{label:<40} {len(found['imported']):>8} {len(found['called']):>8} {found['max_depth']:>9} "
              f"{f'{median(work):g} ({spread})':>34}")  # fmt: skip
        print("  deepest chain: " + " -> ".join(found["max_chain"]), flush=True)
        if args.list:
            for kind in ("imported", "called"):
                print(f"  {kind}: " + " ".join(found[kind]))
            print("  work depths (modules: calls): " + " ".join(f"{d}: {n}" for d, n in work.items()))


if __name__ == "__main__":
    main()
