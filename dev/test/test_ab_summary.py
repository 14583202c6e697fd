"""scripts/ab_summary.py on a log in gpu_session.sh ab's form: medians, ratios to "-", order, failed runs."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import ab_summary  # noqa: E402

LOG = """warning: cannot open tokenizer file
== -: d4w256h4 B=8 T=256
step 40/40 | loss 10.882027 | lr 1.01e-04 | norm 0.6836 | 1.1 ms | 17.3% MFU | 1800000 tok/s
== X=1: d4w256h4 B=8 T=256
SESSA_GEMM_PICK: result 1 for m256 n2048
step 40/40 | loss 10.882051 | lr 1.01e-04 | norm 0.6836 | 1.1 ms | 17.5% MFU | 1850000 tok/s
== X=2: d4w256h4 B=8 T=256
== -: d4w256h4 B=8 T=256
step 40/40 | loss 10.882027 | lr 1.01e-04 | norm 0.6836 | 1.1 ms | 17.3% MFU | 1820000 tok/s
== X=1: d4w256h4 B=8 T=256
step 40/40 | loss 10.882051 | lr 1.01e-04 | norm 0.6836 | 1.1 ms | 17.5% MFU | 1870000 tok/s
== -: d4w256h4 B=8 T=256
step 40/40 | loss 10.882027 | lr 1.01e-04 | norm 0.6836 | 1.1 ms | 17.3% MFU | 1810000 tok/s
== X=1: d12 B=8 T=1024
step 12/12 | loss 10.902111 | lr 1.15e-04 | norm 0.5721 | 19.4 ms | 31.0% MFU | 421900 tok/s
"""


def test_medians_ratios_and_order(tmp_path):
    runs = ab_summary.parse(LOG.splitlines())
    assert list(runs) == ["d4w256h4 B=8 T=256", "d12 B=8 T=1024"]
    d4 = runs["d4w256h4 B=8 T=256"]
    assert list(d4) == ["-", "X=1", "X=2"]
    assert d4["-"] == [1800000.0, 1820000.0, 1810000.0] and d4["X=1"] == [1850000.0, 1870000.0] and d4["X=2"] == []
    lines = ab_summary.table(runs)
    x1 = next(l for l in lines if l.strip().startswith("X=1") and "1,860,000" in l)
    assert f"{1860000 / 1810000:.4f}x of -" in x1            # median of 2 runs over the median of 3
    assert any(l.strip().startswith("X=2") and l.endswith("no run") for l in lines)
    d12 = lines[lines.index("d12 B=8 T=1024:") + 1]
    assert "median 421,900 tok/s" in d12 and "x of -" not in d12   # no "-" run at d12: no ratio
    log = tmp_path / "ab.log"
    log.write_text(LOG)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ab_summary.py"), str(log)], capture_output=True, text=True)
    assert r.returncode == 0 and "1.0276x of -" in r.stdout, r.stdout + r.stderr


def test_empty_log_fails(tmp_path):
    log = tmp_path / "ab.log"
    log.write_text("== -: d12 B=8 T=1024\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "ab_summary.py"), str(log)], capture_output=True, text=True)
    assert r.returncode == 1 and "no runs" in r.stdout
