#!/usr/bin/env python3
"""dev/timeline/timeline.py's step analysis on a hand-made trace whose answer is known (times in us):

  main stream 1: adamw [0, 10)   A [12, 20)   B [18, 30) (launched early by PDL: waits until A ends)   adamw [40, 50)
  side stream 2:                 S [22, 36)
  main runs A 12-20 (8), B 20-30 (10, its 18-20 overlap goes to A, the earlier), adamw 40-50 (10); main waits 10-12
  (nothing), 30-36 (S runs: 6, charged to S), 36-40 (nothing). Wall 40 (the step: adamw end to adamw end).
Every number is exact (integer nanoseconds in, sums of dyadic differences out), so the checks are equalities.
The same trace with launch shapes (grid, block, registers, shared memory) for the SM use, 132 SMs:
  adamw 132 CTAs of 256 threads, 32 registers: 8 CTAs an SM, one partial wave on all 132 SMs: share 1
  A 66 x 128 threads, 255 registers: 2 an SM (registers: 8 warps), share 66/132 = 0.5
  B 33 x 128, 64 registers, 100000 bytes of shared memory: 2 an SM (shared memory), share 0.25
  S 198 x 1024, 64 registers: 1 an SM (threads and registers), 2 waves, the last on 66 SMs: (132 + 66) / 264 = 0.75
  used: A 12-20 (0.5 x 8; 18-20 B waits behind A on main: not counted) 4, B 20-30 (0.25 x 10) 2.5, S 22-36
  (0.75 x 14) 10.5, adamw 40-50 10: 27 of 40; idle 13: A 4, B 1.5 (20-22; 22-30 with S: all SMs), main's wait on
  S 1.5 (30-36 x 0.25), nothing running 6 (10-12, 36-40)."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "timeline"))
from timeline import analyze, ctas_per_sm, sm_share

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
shape = {"adamw": (132, 256, 32, 0), "A": (66, 128, 255, 0), "B": (33, 128, 64, 100000), "S": (198, 1024, 64, 0)}
b = analyze([k + shape[k[3]] for k in ks], names)
idle = b["sm_idle"]
checks += [
    ("CTAs per SM: adamw (threads)", ctas_per_sm(256, 32, 0), 8), ("A (registers)", ctas_per_sm(128, 255, 0), 2),
    ("B (shared memory)", ctas_per_sm(128, 64, 100000), 2), ("S (one)", ctas_per_sm(1024, 64, 0), 1),
    ("S share (2 waves)", sm_share(*shape["S"]), 0.75), ("A share", sm_share(*shape["A"]), 0.5),
    ("SM use", b["sm_used"], 27.0), ("idle charged to A", idle["A"], 4.0), ("idle charged to B", idle["B"], 1.5),
    ("idle while main waits on S", idle["(main waits: other streams)"], 1.5),
    ("idle with nothing running", idle["(nothing running)"], 6.0), ("idle sums to wall - use", sum(idle.values()), 13.0),
    ("the rest as without shapes", (b["busy"], b["on_main"]["B"], b["charged"]["S"]), (34.0, 10.0, 6.0)),
]
bad = 0
for what, got, want in checks:
    ok = got == want
    bad += not ok
    print(f"{'OK  ' if ok else 'FAIL'} {what}: {got} (expected {want}, exact)")
sys.exit(1 if bad else 0)
