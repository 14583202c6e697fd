#!/usr/bin/env python3
"""The A/B table of scripts/gpu_session.sh ab: its log (one "== ENTRY: CONFIG" line before each run's last step
line, "step N/N | ... | X tok/s") -> per config, each entry's runs in the order they ran, their median and the
median's ratio to the entry "-" (the trainer's defaults), in the order the entries first ran.

    python3 scripts/ab_summary.py gpu_out/ab.log

A config whose "-" entry did not run gets no ratios; a header without a step line (a failed run) is listed with
no runs. Exit status 1 when the log holds no runs at all.
"""
import re
import statistics
import sys

HEAD = re.compile(r"^== (.+?): (.+)$")
STEP = re.compile(r"^step \d+/\d+ \|.*\| ([0-9.]+) tok/s\s*$")


def parse(lines):
    """-> {config: {entry: [tok/s, ...]}}, entries and configs in first-seen order"""
    runs, cur = {}, None
    for line in lines:
        line = line.rstrip("\n")
        m = HEAD.match(line)
        if m:
            entry, config = m[1], m[2]
            runs.setdefault(config, {}).setdefault(entry, [])
            cur = (config, entry)
            continue
        m = STEP.match(line)
        if m and cur is not None:
            runs[cur[0]][cur[1]].append(float(m[1]))
            cur = None                       # one step line per header: the run's last
    return runs


def table(runs):
    out = []
    for config, entries in runs.items():
        base = entries.get("-")
        base_med = statistics.median(base) if base else None
        out.append(f"{config}:")
        for entry, v in entries.items():
            if not v:
                out.append(f"  {entry:<50} no run")
                continue
            med = statistics.median(v)
            ratio = f"  {med / base_med:.4f}x of -" if base_med else ""
            out.append(f"  {entry:<50} median {med:,.0f} tok/s{ratio}  (runs {', '.join(f'{x:,.0f}' for x in v)})")
    return out


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: ab_summary.py AB_LOG")
    runs = parse(open(argv[1], errors="replace"))
    if not any(v for e in runs.values() for v in e.values()):
        print(f"{argv[1]}: no runs")
        return 1
    print("\n".join(table(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
