"""How long building bench/matcher.py's app takes: 1,000 functions defined, validated and compiled, then the Registry.

Run (from the repository root):

    PYTHONPATH=. python bench/app_build.py                          # best of 5, this tree
    PYTHONPATH=. python bench/app_build.py --trees ../main .        # A, B, A, B, ... in the same minute
    PYTHONPATH=. python bench/app_build.py --profile                # one build under cProfile: the top entries

Each build runs in a fresh interpreter, as a service's first (and only) app load does: the expression and
module-scan caches start empty. Imports are done before the clock starts; what is timed is exactly
``app_build_seconds`` of bench/matcher.py (``build_app`` then ``Registry``). ``--trees`` takes repository
roots (worktrees): each child imports ``pipeline`` and bench/matcher.py from its tree, and the children of
the trees alternate, so a load change on the shared machine hits both. Reported per tree: the best and
median seconds and every run, with the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time
sys.path[:0] = [{root!r}, {bench!r}]
from matcher import build_app
from pipeline.sdk.app import Registry
import pipeline
profile = {profile!r}
if profile:
    import cProfile, pstats
    prof = cProfile.Profile()
    prof.enable()
t0 = time.perf_counter()
registry = Registry([build_app({functions})])
seconds = time.perf_counter() - t0
if profile:
    prof.disable()
    stats = pstats.Stats(prof, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats({top})
    stats.sort_stats("cumulative").print_stats({top})
print(json.dumps({{"seconds": seconds, "functions": len(registry.functions), "pipeline": pipeline.__file__}}))
"""


def build_once(root: Path, functions: int, profile: bool = False, top: int = 25) -> dict:
    code = CHILD.format(root=str(root), bench=str(root / "bench"), functions=functions, profile=profile, top=top)
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"build in {root} failed:\n{done.stderr}")
    if profile:
        print(done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["pipeline"].startswith(str(root)):
        raise SystemExit(f"{root}: the child imported pipeline from {result['pipeline']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--functions", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5, help="builds per tree (fresh interpreters, interleaved)")
    ap.add_argument("--trees", nargs="+", default=[str(HERE.parent)], help="repository roots to compare")
    ap.add_argument("--profile", action="store_true", help="one build per tree under cProfile instead")
    ap.add_argument("--top", type=int, default=25, help="entries of the profile printed, by tottime and cumulative")
    args = ap.parse_args()
    roots = [Path(t).resolve() for t in args.trees]
    print(f"command: PYTHONPATH=. python bench/app_build.py --functions {args.functions} --repeat {args.repeat} "
          f"--trees {' '.join(map(str, roots))}" + (" --profile" if args.profile else ""), file=sys.stderr)
    if args.profile:
        for root in roots:
            print(f"== {root}: {build_once(root, args.functions, True, args.top)['seconds']:.3f} s (profiled)")
        return
    load_before = os.getloadavg()[0]
    runs: dict[Path, list[float]] = {root: [] for root in roots}
    for _ in range(args.repeat):
        for root in roots:
            result = build_once(root, args.functions)
            assert result["functions"] == args.functions, result
            runs[root].append(result["seconds"])
    load_after = os.getloadavg()[0]
    figures = {"bench": "app_build", "functions": args.functions, "repeat": args.repeat,
               "load_avg_1m": [round(load_before, 2), round(load_after, 2)], "trees": {}}
    for root, seconds in runs.items():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "pipeline", "bench"],
                               capture_output=True, text=True, check=False).stdout.strip()
        label = f"{root} ({head}{'+dirty' if dirty else ''})"
        figures["trees"][label] = {"best_s": round(min(seconds), 4), "median_s": round(statistics.median(seconds), 4),
                                   "all_s": [round(s, 4) for s in seconds]}
        print(f"{label}: best {min(seconds):.3f} s, median {statistics.median(seconds):.3f} s "
              f"over {len(seconds)} builds of {args.functions} functions")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
