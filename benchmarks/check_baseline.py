"""Fail when a machine-independent throughput ratio fell well below the committed baseline.

    python benchmarks/check_baseline.py RESULTS.json [--baseline benchmarks/baseline.json] [--margin 0.5]
    python benchmarks/check_baseline.py RUN1.json [RUN2.json ...] --update   # rewrite the baseline

RESULTS.json is pytest-benchmark's ``--benchmark-json`` output of the suites in this
folder.  Only *ratios* are compared, never seconds: every ``*_per_triad_GBs`` entry of a
benchmark's ``extra_info`` is a throughput (node-steps/s, or a mat-vec/PCG bandwidth in
GB/s) divided by the STREAM-triad bandwidth measured in the same run at the same thread
count, so a slower or faster machine moves both and the ratio stays.  A ratio fails when

    measured < baseline × (1 − margin)        (margin 0.5 by default: a 50 % drop)

Ratios measured with more than one thread use ``multithread_margin`` from the baseline
(0.65 by default): on the reference machine the 2-thread triad itself varied between 29 and
49 GB/s from one quiet run to the next, while the 1-thread triad stayed within ±15 %.

A benchmark that did not get the CPUs it asked for is reported as NOT JUDGED instead (its
ratio says more about the neighbours than about twin): its ``cpu_use`` (CPU seconds of the
best round ÷ (wall seconds × threads)) was below ``--min-cpu-use`` (default 0.8), or, for
results without ``cpu_use``, other processes used more than ``--max-load`` of the CPUs
(``others_cpu_share``, default 0.35).

Exit status: 0 all judged ratios hold (with a warning when the machine was too busy to judge
any); 1 a ratio regressed, or no benchmark of the baseline is in RESULTS (wrong file or
marker); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUFFIX = "_per_triad_GBs"


def load_results(path: Path) -> dict[str, dict]:
    data = json.loads(path.read_text())
    out = {}
    for b in data.get("benchmarks", []):
        out[b["name"]] = b.get("extra_info", {})
    return out


def ratios(info: dict) -> dict[str, float]:
    return {k: float(v) for k, v in info.items() if k.endswith(SUFFIX) and isinstance(v, (int, float))}


def starved(info: dict, min_cpu_use: float, max_load: float) -> str | None:
    """Why a measurement cannot be judged (None when it can)."""
    use = info.get("cpu_use")
    if isinstance(use, (int, float)):
        if use < min_cpu_use:
            return (f"it got {use:.0%} of the CPU time its {info.get('threads')} thread(s) asked for (others used "
                    f"{float(info.get('others_cpu_share', 0.0)):.0%} of the CPUs)")
        return None
    load = float(info.get("others_cpu_share", 0.0))
    return f"other processes used {load:.0%} of the CPUs meanwhile" if load > max_load else None


def check(results: dict[str, dict], baseline: dict, margin: float, min_cpu_use: float, max_load: float
          ) -> tuple[list[str], int, int, int]:
    lines: list[str] = []
    failed = judged = matched = 0
    for name, expected in sorted(baseline["ratios"].items()):
        info = results.get(name)
        if info is None:
            continue
        matched += 1
        why = starved(info, min_cpu_use, max_load)
        got = ratios(info)
        for key, base in sorted(expected.items()):
            if key not in got:
                lines.append(f"FAIL  {name}: {key} missing from the results (the benchmark no longer reports it)")
                failed += 1
                continue
            m = margin if int(info.get("threads") or 1) <= 1 else float(baseline.get("multithread_margin", 0.65))
            floor = base * (1.0 - m)
            value = got[key]
            change = value / base - 1.0
            if why:
                lines.append(f"NOT JUDGED  {name}: {key} = {value:.4g} (baseline {base:.4g}, {change:+.0%}): {why}")
                continue
            judged += 1
            if value < floor:
                failed += 1
                lines.append(f"FAIL  {name}: {key} = {value:.4g} is {-change:.0%} below the baseline {base:.4g} "
                             f"(allowed: down to {floor:.4g}, -{m:.0%}); threads {info.get('threads')}, "
                             f"triad {info.get('triad_GBs')} GB/s, loadavg {info.get('loadavg_before')}")
            else:
                lines.append(f"ok    {name}: {key} = {value:.4g} (baseline {base:.4g}, {change:+.0%})")
    return lines, failed, judged, matched


def update(runs: list[dict[str, dict]], path: Path, margin: float, min_cpu_use: float, max_load: float) -> None:
    """Baseline = per ratio, the median over the runs that got their CPUs (see :func:`starved`);
    the median over all runs where none did."""
    import statistics

    old = json.loads(path.read_text()) if path.exists() else {}
    new = {k: v for k, v in old.items() if k not in ("ratios", "measured_under")}
    new.setdefault("margin", margin)
    new.setdefault("multithread_margin", 0.65)
    new["ratios"], new["measured_under"] = {}, {}
    names = sorted({name for run in runs for name, info in run.items() if ratios(info)})
    for name in names:
        infos = [run[name] for run in runs if name in run and ratios(run[name])]
        quiet = [i for i in infos if starved(i, min_cpu_use, max_load) is None]
        use = quiet or infos
        keys = sorted({k for i in use for k in ratios(i)})
        new["ratios"][name] = {k: statistics.median(ratios(i)[k] for i in use if k in ratios(i)) for k in keys}
        new["measured_under"][name] = {"runs": len(use), "quiet": bool(quiet), "threads": use[0].get("threads"),
                                       "cpu_use": [i.get("cpu_use") for i in use],
                                       "others_cpu_share": [i.get("others_cpu_share") for i in use],
                                       "triad_GBs": [i.get("triad_GBs") for i in use]}
    path.write_text(json.dumps(new, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, nargs="+",
                    help="pytest --benchmark-json output (several only with --update: medians are taken)")
    ap.add_argument("--baseline", type=Path, default=HERE / "baseline.json")
    ap.add_argument("--margin", type=float, help="allowed relative drop (default: the baseline's, else 0.5)")
    ap.add_argument("--min-cpu-use", type=float, default=0.8,
                    help="skip ratios whose best round got less than this share of its CPUs (default 0.8)")
    ap.add_argument("--max-load", type=float, default=0.35,
                    help="without cpu_use: skip ratios measured while others used more than this share of the "
                         "CPUs (default 0.35)")
    ap.add_argument("--update", action="store_true", help="write the baseline from RESULTS instead of checking")
    args = ap.parse_args(argv)
    try:
        runs = [load_results(p) for p in args.results]
    except (OSError, ValueError, KeyError) as exc:
        print(f"check_baseline: cannot read {' '.join(map(str, args.results))}: {exc}", file=sys.stderr)
        return 2
    if args.update:
        update(runs, args.baseline, args.margin if args.margin is not None else 0.5, args.min_cpu_use,
               args.max_load)
        print(f"check_baseline: wrote {args.baseline} from {len(runs)} run(s)")
        return 0
    if len(runs) != 1:
        print("check_baseline: give one RESULTS file to check (several only with --update)", file=sys.stderr)
        return 2
    results = runs[0]
    args.results = args.results[0]
    try:
        baseline = json.loads(args.baseline.read_text())
    except (OSError, ValueError) as exc:
        print(f"check_baseline: cannot read the baseline {args.baseline}: {exc}", file=sys.stderr)
        return 2
    margin = args.margin if args.margin is not None else float(baseline.get("margin", 0.5))
    lines, failed, judged, matched = check(results, baseline, margin, args.min_cpu_use, args.max_load)
    for line in lines:
        print(line)
    if failed:
        print(f"check_baseline: {failed} ratio(s) fell more than the allowed margin below {args.baseline.name}: "
              "a performance regression (or a machine very unlike the baseline's; see benchmarks/README.md)")
        return 1
    if matched == 0:
        print(f"check_baseline: nothing to check: no benchmark of {args.baseline.name} is in {args.results} "
              "(run: pytest benchmarks -m ci --benchmark-json=FILE)")
        return 1
    if judged == 0:
        print("check_baseline: WARNING: nothing judged: no benchmark got the CPUs it asked for (other "
              "processes competed); rerun on a quiet machine")
        return 0
    print(f"check_baseline: {judged} ratio(s) within the margins of the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
