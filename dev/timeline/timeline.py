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
  - SM use, where the trace has each kernel's grid, block, registers and shared memory (cupti_trace.so writes them):
    a kernel's CTAs per SM from sm_90's limits (occupancy: 2048 threads, 32 CTAs, 64K registers in 256-register
    units per warp, 228 KiB of shared memory with 1 KiB reserved per CTA), its waves over the SMs (SMS, default 132:
    an H100 / H200) and so the average share of the SMs holding its CTAs (all waves but the last hold every SM, the
    last min(CTAs left, SMs)); per stream only the earliest running kernel counts (a later one of the same stream
    waits in griddepcontrol). Summed over the streams (at most all SMs) and over time: the step's SM use, an upper
    bound (a CTA counted resident for its kernel's whole wave, whatever it waits on). The idle rest, in
    whole-GPU microseconds, is charged to the main-stream kernel running then (its grid leaves SMs idle and nothing
    else fills them), or to main's waits: the other streams' kernels (shared) or nothing running.
"""
import collections, csv, math, os, re, shutil, subprocess, sys

SMS = int(os.environ.get("SMS", "132"))   # the GPU's SMs (H100 SXM / H200: 132)

def ctas_per_sm(block, regs, smem):
    """resident CTAs of one kernel per SM on sm_90 (the occupancy calculator's limits; at least 1)"""
    warps = max(1, math.ceil(block / 32))
    by_threads = 2048 // (warps * 32)
    reg_warp = math.ceil(max(regs, 1) * 32 / 256) * 256   # registers are allocated per warp, 256 at a time
    by_regs = (65536 // reg_warp) // warps
    by_smem = 233472 // (smem + 1024)                     # 228 KiB per SM, 1 KiB reserved per CTA
    return max(1, min(32, by_threads, by_regs, by_smem))

def sm_share(grid, block, regs, smem, sms=SMS):
    """the average share of the SMs that hold a kernel's CTAs over its waves (CTAs spread over the SMs first)"""
    if grid <= 0: return 0.0
    slots = sms * ctas_per_sm(block, regs, smem)
    waves = math.ceil(grid / slots)
    last = grid - (waves - 1) * slots
    return ((waves - 1) * sms + min(last, sms)) / (waves * sms)

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
    """ks: (start_ns, end_ns, stream, name[, grid, block, regs, smem]) per kernel; names: name -> short name. Returns a
    dict of the step's numbers (us): wall, busy, idle_main, main (stream id), what, and per short name: tot, cnt,
    alone, on_main, charged; per stream: [kernels, summed time]; with the launch shapes also sm_used (whole-GPU us of
    SM use) and per short name sm_idle (the idle SMs' whole-GPU us charged to it: see the header), with the keys
    "(main waits: other streams)" and "(nothing running)" for the rest."""
    ks = sorted(ks)
    share = {k: sm_share(*k[4:8]) for k in ks if len(k) >= 8}
    adam = [k for k in ks if "adamw" in names[k[3]]]
    if len(adam) >= 2:
        t0, t1, main = adam[-2][1], adam[-1][1], adam[-1][2]
        what = f"the last complete step of {len(adam)} (AdamW to AdamW)"
    else:
        t0, t1 = ks[0][0], max(k[1] for k in ks)
        main = collections.Counter(k[2] for k in ks).most_common(1)[0][0]
        what = "the whole trace (no AdamW steps found); main = the stream with the most kernels"
    win = [(max(k[0], t0), min(k[1], t1), k[2], names[k[3]], share.get(k)) for k in ks if k[1] > t0 and k[0] < t1]
    shapes = bool(win) and all(w[4] is not None for w in win)
    # sweep: between consecutive start/end times the set of running kernels is constant
    ev = []
    for i, w in enumerate(win):
        ev.append((w[0], 1, i)); ev.append((w[1], -1, i))
    ev.sort(key=lambda x: (x[0], x[1]))
    active, last = set(), t0
    busy = idle_main = sm_used = 0.0
    alone, charged, on_main, sm_idle = (collections.Counter() for _ in range(4))
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
            if shapes:   # per stream its earliest running kernel (the later ones wait in griddepcontrol)
                first = {}
                for j in active:
                    st = win[j][2]
                    if st not in first or win[j][0] < win[first[st]][0]: first[st] = j
                use = min(1.0, sum(win[j][4] for j in first.values()))
                sm_used += use * dt
                idle = (1.0 - use) * dt
                if main in first: sm_idle[win[first[main]][3]] += idle
                elif active: sm_idle["(main waits: other streams)"] += idle
                else: sm_idle["(nothing running)"] += idle
        last = t
        if d > 0: active.add(i)
        else: active.discard(i)
    per_stream = collections.defaultdict(lambda: [0, 0.0])
    tot, cnt = collections.Counter(), collections.Counter()
    for s, e, st, n, _ in win:
        per_stream[st][0] += 1; per_stream[st][1] += (e - s) / 1e3
        tot[n] += (e - s) / 1e3; cnt[n] += 1
    out = dict(what=what, wall=(t1 - t0) / 1e3, busy=busy, idle_main=idle_main, main=main, per_stream=per_stream,
               tot=tot, cnt=cnt, alone=alone, on_main=on_main, charged=charged)
    if shapes: out.update(sm_used=sm_used, sm_idle=sm_idle)
    return out

def main():
    if len(sys.argv) != 2: sys.exit("usage: timeline.py TIMELINE.csv")
    rows = list(csv.DictReader(open(sys.argv[1])))
    if not rows: sys.exit(f"{sys.argv[1]}: no kernels")
    ks = [(int(r["start_ns"]), int(r["end_ns"]), int(r["stream"]), r["name"]) +
          ((int(r["grid"]), int(r["block"]), int(r["regs"]), int(r["smem"])) if "regs" in r else ()) for r in rows]
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
    if "sm_used" in a:
        idle = a["sm_idle"]
        print(f"SM use ({SMS} SMs; an upper bound, see the header): {a['sm_used']:.1f} of {wall:.1f} whole-GPU us "
              f"({100 * a['sm_used'] / wall:.1f}%); idle {wall - a['sm_used']:.1f} us, charged to the main-stream kernel "
              "running then (or to main's waits):")
        print(f"{'idle':>9s} {'share':>6s}  kernel (whole-GPU us of idle SMs while it ran on main; share = of its main time)")
        for n in sorted(idle, key=lambda n: -idle[n])[:25]:
            t = on_main.get(n, 0.0)
            print(f"{idle[n]:9.1f} {(100 * idle[n] / t if t > 0 else float('nan')):5.1f}%  {n}")

if __name__ == "__main__":
    main()
