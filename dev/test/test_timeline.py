#!/usr/bin/env python3
"""dev/timeline/timeline.py's step analysis on a hand-made trace whose answer is known (times in us):

  main stream 1: adamw [0, 10)   A [12, 20)   B [18, 30) (launched early by PDL: waits until A ends)   adamw [40, 50)
  side stream 2:                 S [22, 36)
  main runs A 12-20 (8), B 20-30 (10, its 18-20 overlap goes to A, the earlier), adamw 40-50 (10); main waits 10-12
  (nothing), 30-36 (S runs: 6, charged to S), 36-40 (nothing). Wall 40 (the step: adamw end to adamw end).
Every number is exact (integer nanoseconds in, sums of dyadic differences out), so the checks are equalities."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "timeline"))
from timeline import analyze

us = 1000
ks = [(0, 10 * us, 1, "adamw"), (12 * us, 20 * us, 1, "A"), (18 * us, 30 * us, 1, "B"), (22 * us, 36 * us, 2, "S"),
      (40 * us, 50 * us, 1, "adamw")]
names = {"adamw": "adamw_segments_kernel", "A": "A", "B": "B", "S": "S"}
a = analyze(ks, names)
checks = [
    ("wall", a["wall"], 40.0), ("busy", a["busy"], 34.0), ("nothing running on main's wait", a["idle_main"], 6.0),
    ("A on main", a["on_main"]["A"], 8.0), ("B on main", a["on_main"]["B"], 10.0),
    ("adamw on main", a["on_main"]["adamw_segments_kernel"], 10.0), ("S charged", a["charged"]["S"], 6.0),
    ("S alone", a["alone"]["S"], 6.0), ("B alone (20-22)", a["alone"]["B"], 2.0), ("A alone (12-18)", a["alone"]["A"], 6.0),
    ("B total", a["tot"]["B"], 12.0), ("main", a["main"], 1),
    ("partition: main + charged + nothing = wall", sum(a["on_main"].values()) + sum(a["charged"].values()) + a["idle_main"], 40.0),
]
bad = 0
for what, got, want in checks:
    ok = got == want
    bad += not ok
    print(f"{'OK  ' if ok else 'FAIL'} {what}: {got} (expected {want}, exact)")
sys.exit(1 if bad else 0)
