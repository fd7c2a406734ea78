#!/usr/bin/env python3
"""Compares two bench/run results (their summary.md), figure by figure.

  bench/compare.py bench/results/OLD bench/results/NEW [--threshold 0.10]

Machines and runs differ, so a figure is judged by its ratio to the baseline
measured in the same run (the summary's ratio column) when it has one; an
absolute figure without a baseline is shown but only marked, never judged
alone. A row is WORSE when its ratio moved the wrong way by more than the
threshold (lower is better for ms and MiB, higher for msg/s and req/s).
Exit 0 always: the rows are for a reader, with the runs' load beside them.
"""
import argparse
import pathlib
import re
import sys


def load(run):
    rows, section, head = {}, None, []
    for line in (pathlib.Path(run) / "summary.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith(("Commit", "Load average")):
            head.append(line)
        elif line.startswith("| ") and not line.startswith(("| figure", "|---")):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[(section, cells[0])] = cells
    return rows, head


def number(text):
    m = re.match(r"[-\d.,]+", text.replace(",", ""))
    return float(m.group(0).rstrip("x")) if m and m.group(0) not in ("-", ".") else None


def lower_is_better(value):
    return value.endswith(("ms", "MiB"))


def main(argv):
    ap = argparse.ArgumentParser(description="Compares two bench/run results figure by figure.")
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--threshold", type=float, default=0.10, help="ratio move that marks a row WORSE")
    a = ap.parse_args(argv)
    threshold = a.threshold
    args = [a.old, a.new]
    (old, old_head), (new, new_head) = load(args[0]), load(args[1])
    print(f"old: {args[0]}\n  " + "\n  ".join(old_head))
    print(f"new: {args[1]}\n  " + "\n  ".join(new_head))
    print(f"\n| section | figure | old | old ratio | new | new ratio | change of ratio | |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    worse = 0
    for key, n in new.items():
        o = old.get(key)
        if not o:
            print(f"| {key[0]} | {key[1]} | — | — | {n[1]} | {n[4]} | — | new |")
            continue
        ro, rn = number(o[4]), number(n[4])
        mark, change = "", "—"
        if ro and rn:
            rel = rn / ro - 1
            change = f"{rel:+.0%}"
            bad = rel > threshold if lower_is_better(n[1]) else rel < -threshold
            if bad:
                mark, worse = "WORSE", worse + 1
        elif o[1] != n[1]:
            mark = "absolute only"
        print(f"| {key[0]} | {key[1]} | {o[1]} | {o[4]} | {n[1]} | {n[4]} | {change} | {mark} |")
    for key in old:
        if key not in new:
            print(f"| {key[0]} | {key[1]} | {old[key][1]} | {old[key][4]} | — | — | — | missing in new |")
    print(f"\n{worse} figure(s) whose ratio to its same-run baseline moved the wrong way by more than {threshold:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
