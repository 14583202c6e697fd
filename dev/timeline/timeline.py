#!/usr/bin/env python3
"""Where one training step's time goes, overlap included, from dev/timeline/cupti_trace.so's CSV.

  CUDA_INJECTION64_PATH=dev/timeline/cupti_trace.so SESSA_TIMELINE=t.csv ./train_sessacu ... -x 4
  python3 dev/timeline/timeline.py t.csv

The step is the last complete one: from the end of one AdamW kernel (adamw_segments_kernel) to the end of the next
(the whole trace when there is none). The main stream is AdamW's. Printed:
  - wall time, the time some kernel runs (busy), and the time none does (idle: launch and dependency latency);
  - per stream: kernels and their summed time;
  - per kernel name: count, summed time, time it ran alone on the GPU, its main-stream time (when main-stream kernels
    overlap, programmatic dependent launch, the time goes to the earliest: the later ones wait in griddepcontrol),
    and the main stream's waiting time charged to it: while no main-stream kernel runs, the time is split among the
    kernels running on other streams (what the chain is waiting for), or counted as nothing running. The main-stream
    time plus the charged waiting time ("critical") partition the wall time: the main stream is the chain of the step
    (forward, loss, backward, optimizer), the other streams feed it (the feedback's side streams, the weight
    gradients). Run the trainer ungraphed (-cg 0): a graph's branches run on streams of their own.
"""
import collections, csv, re, shutil, subprocess, sys

def short_names(names):
    """demangled (c++filt when present), arguments dropped"""
    out = dict((n, n) for n in names)
    if shutil.which("c++filt"):
        lst = list(names)
        res = subprocess.run(["c++filt"], input="\n".join(lst), capture_output=True, text=True).stdout.split("\n")
        out = dict(zip(lst, res))
    for k, v in out.items():
        v = re.sub(r"^void ", "", v)
        depth, cut = 0, len(v)
        for i, ch in enumerate(v):   # cut at the first '(' outside template brackets
            if ch == "<": depth += 1
            elif ch == ">": depth -= 1
            elif ch == "(" and depth == 0: cut = i; break
        out[k] = v[:cut][:90]
    return out

def analyze(ks, names):
    """ks: (start_ns, end_ns, stream, name) per kernel; names: name -> short name. Returns a dict of the step's
    numbers (us): wall, busy, idle_main, main (stream id), what, and per short name: tot, cnt, alone, on_main, charged;
    per stream: [kernels, summed time]."""
    ks = sorted(ks)
    adam = [k for k in ks if "adamw" in names[k[3]]]
    if len(adam) >= 2:
        t0, t1, main = adam[-2][1], adam[-1][1], adam[-1][2]
        what = f"the last complete step of {len(adam)} (AdamW to AdamW)"
    else:
        t0, t1 = ks[0][0], max(k[1] for k in ks)
        main = collections.Counter(k[2] for k in ks).most_common(1)[0][0]
        what = "the whole trace (no AdamW steps found); main = the stream with the most kernels"
    win = [(max(s, t0), min(e, t1), st, names[n]) for s, e, st, n in ks if e > t0 and s < t1]
    # sweep: between consecutive start/end times the set of running kernels is constant
    ev = []
    for i, (s, e, st, n) in enumerate(win):
        ev.append((s, 1, i)); ev.append((e, -1, i))
    ev.sort(key=lambda x: (x[0], x[1]))
    active, last = set(), t0
    busy = idle_main = 0.0
    alone, charged, on_main = collections.Counter(), collections.Counter(), collections.Counter()
    for t, d, i in ev:
        dt = (t - last) / 1e3
        if dt > 0:
            if active: busy += dt
            if len(active) == 1: alone[win[next(iter(active))][3]] += dt
            mains = [j for j in active if win[j][2] == main]
            if mains:   # overlapping main-stream kernels (programmatic dependent launch): the earliest one runs, the
                on_main[win[min(mains, key=lambda j: win[j][0])][3]] += dt   # later ones wait in griddepcontrol
            elif active:
                for j in active: charged[win[j][3]] += dt / len(active)
            else: idle_main += dt
        last = t
        if d > 0: active.add(i)
        else: active.discard(i)
    per_stream = collections.defaultdict(lambda: [0, 0.0])
    tot, cnt = collections.Counter(), collections.Counter()
    for s, e, st, n in win:
        per_stream[st][0] += 1; per_stream[st][1] += (e - s) / 1e3
        tot[n] += (e - s) / 1e3; cnt[n] += 1
    return dict(what=what, wall=(t1 - t0) / 1e3, busy=busy, idle_main=idle_main, main=main, per_stream=per_stream,
                tot=tot, cnt=cnt, alone=alone, on_main=on_main, charged=charged)

def main():
    if len(sys.argv) != 2: sys.exit("usage: timeline.py TIMELINE.csv")
    rows = list(csv.DictReader(open(sys.argv[1])))
    if not rows: sys.exit(f"{sys.argv[1]}: no kernels")
    ks = [(int(r["start_ns"]), int(r["end_ns"]), int(r["stream"]), r["name"]) for r in rows]
    a = analyze(ks, short_names(set(k[3] for k in ks)))
    wall, busy, main = a["wall"], a["busy"], a["main"]
    tot, cnt, alone, on_main, charged = a["tot"], a["cnt"], a["alone"], a["on_main"], a["charged"]
    print(f"{a['what']}: wall {wall:.1f} us, some kernel running {busy:.1f} us ({100 * busy / wall:.1f}%), "
          f"none {wall - busy:.1f} us")
    print("streams (kernels, summed kernel time):")
    for st, (c, t) in sorted(a["per_stream"].items(), key=lambda kv: -kv[1][1]):
        print(f"  {'main ' if st == main else ''}stream {st:4d}: {c:6d} kernels {t:10.1f} us")
    main_busy = sum(on_main.values())
    print(f"main stream: running {main_busy:.1f} us; waiting {wall - main_busy:.1f} us, of which other streams' "
          f"kernels {sum(charged.values()):.1f} us (charged below) and nothing running {a['idle_main']:.1f} us")
    print(f"{'critical':>9s} {'main':>9s} {'waited':>9s} {'total':>9s} {'alone':>9s} {'count':>6s}  kernel (us; "
          "critical = time on the main stream + main's waiting charged to it)")
    crit = {n: on_main[n] + charged[n] for n in tot}
    for n in sorted(tot, key=lambda n: -crit[n])[:45]:
        print(f"{crit[n]:9.1f} {on_main[n]:9.1f} {charged[n]:9.1f} {tot[n]:9.1f} {alone[n]:9.1f} {cnt[n]:6d}  {n}")

if __name__ == "__main__":
    main()
