#!/usr/bin/env python3
"""bench/compare.py: runs pivot and PyTorch on the mini-MLLM SFT and DPO training steps, interleaved, each run in its
own process, and prints one table (steps/s, ratio, peak RSS), the Vulkan rows, the GEMM table and pivot's per-op
profiles. bench/run.sh is the documented entry point (it builds pivot and installs torch first).

    python3 bench/compare.py --pivot build/pivot [--python bench/.venv/bin/python] [--gemm build/bench_gemm]
                             [--quick] [--no-torch] [--no-vulkan] [--no-gemm] [--runs N] [--steps K] [--warmup W]

Method: a run is one process that builds the model and the step, does W untimed warm-up steps, then K timed steps;
its time is the median of its K step times. Each configuration gets N runs (default 5; --quick 3); the runs of all
configurations are interleaved round by round (the order rotates each round), and the reported figure is the
median over the N runs. Peak RSS is the ru_maxrss of the run's process (from wait4), the largest over its runs.
Thread settings (2 cores here): PyTorch runs with OMP_NUM_THREADS = MKL_NUM_THREADS = b at process start and
torch.set_num_threads(t) for b, t in {1, 2}; pivot with 1 and 2 threads (plan threads; OpenBLAS follows them).
Each side's fastest setting goes into the table; all are listed below it.
GEMM: pivot runs its own AVX-512 / AVX2 GEMM kernels where the CPU has them; it is then also run with
PIVOT_GEMM=openblas (its fallback: the OpenBLAS it links) in its own rows. Where pivot uses OpenBLAS and that
OpenBLAS picks a generic kernel on a CPU it does not know (0.3.21 takes Sapphire Rapids for 'Prescott', SSE3 only),
pivot is also run with OPENBLAS_CORETYPE set to the CPU's real class (SkylakeX for AVX-512, Haswell for AVX2), in
its own rows, and the GEMM table is printed for both.
This script uses only the Python standard library (it runs with the system python3; torch runs in the venv).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pivot", default=os.path.join(ROOT, "build", "pivot"))
    ap.add_argument("--python", default=os.path.join(HERE, ".venv", "bin", "python"))
    ap.add_argument("--gemm", default=os.path.join(ROOT, "build", "bench_gemm"))
    ap.add_argument("--quick", action="store_true", help="fewer runs and steps (3 runs of 3 steps)")
    ap.add_argument("--no-torch", action="store_true", help="pivot only")
    ap.add_argument("--no-vulkan", action="store_true", help="skip the Vulkan rows")
    ap.add_argument("--no-gemm", action="store_true", help="skip the GEMM table")
    ap.add_argument("--runs", type=int, help="runs per configuration (default 5, --quick 3)")
    ap.add_argument("--steps", type=int, help="timed steps per run (default 5, --quick 3)")
    ap.add_argument("--warmup", type=int, help="untimed steps per run (default 3, --quick 2)")
    ap.add_argument("--threads", default="1,2", help="thread counts tried on both sides (default 1,2)")
    ap.add_argument("--openblas-core", default="auto",
                    help="OPENBLAS_CORETYPE for the extra pivot rows: auto (when OpenBLAS misdetects the CPU), "
                         "none, or a core name")
    ap.add_argument("--torch-optimizer", default="foreach", choices=["foreach", "fused", "loop"])
    ap.add_argument("--torch-attention", default="sdpa", choices=["sdpa", "sdpa_gqa", "math"])
    ap.add_argument("--kinds", default="sft,dpo", help="which steps to run (sft,dpo)")
    ap.add_argument("--json", help="also write all raw results to this file")
    a = ap.parse_args()
    a.runs = a.runs or (3 if a.quick else 5)
    a.steps = a.steps or (3 if a.quick else 5)
    a.warmup = a.warmup if a.warmup is not None else (2 if a.quick else 3)
    return a


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_process(cmd, env=None, timeout=1800):
    """runs cmd in its own process; returns (rc, stdout, stderr, ru_maxrss in kB, wall seconds). The child is reaped
    with os.wait4, so its peak RSS is its own (not that of earlier children)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, cwd=ROOT, text=True)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                rc, rss = os.waitstatus_to_exitcode(status), ru.ru_maxrss
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                rc, rss = 124, ru.ru_maxrss
                break
            time.sleep(0.02)
        p.returncode = rc  # reaped here: keep Popen from waiting again
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        return rc, fo.read(), fe.read(), rss, wall


def parse_result(out):
    res, prof, inprof = None, [], False
    for line in out.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
        elif line == "PROFILE BEGIN":
            inprof = True
        elif line == "PROFILE END":
            inprof = False
        elif inprof:
            prof.append(line)
    return res, "\n".join(prof)


# ---------------------------------------------------------------------------------------------------- OpenBLAS core
def openblas_path(pivot):
    try:
        out = subprocess.run(["ldd", pivot], capture_output=True, text=True, timeout=30).stdout
    except Exception:  # noqa: BLE001
        return None
    m = re.search(r"libopenblas[^ ]*\s*=>\s*(\S+)", out)
    return m.group(1) if m else None


def openblas_core(lib, env):
    """the core name OpenBLAS selects under env (run in a child so the env applies at load time)"""
    if not lib:
        return None
    code = ("import ctypes; l = ctypes.CDLL(%r); l.openblas_get_corename.restype = ctypes.c_char_p; "
            "print(l.openblas_get_corename().decode())" % lib)
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)
        return p.stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def cpu_class():
    """the OpenBLAS core class this CPU supports: SkylakeX (AVX-512), Haswell (AVX2) or None"""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    if "avx512f" in flags and "avx512bw" in flags and "avx512vl" in flags:
        return "SkylakeX"
    if "avx2" in flags and "fma" in flags:
        return "Haswell"
    return None


# ---------------------------------------------------------------------------------------------------- configurations
class Config:
    def __init__(self, label, cmd, env, side, step, threads, group):
        self.label, self.cmd, self.env, self.side, self.step = label, cmd, env, side, step
        self.threads = threads  # pivot: plan threads; torch: (blas/omp threads, set_num_threads)
        self.group = group  # configurations of one table row (the best of them is shown)
        self.runs = []
        self.profile = None
        self.profile_steps = 0
        self.error = None
        self.unsupported = None
        self.first = None  # the first RESULT (losses etc.)

    def median_s(self):
        return statistics.median(r["t"] for r in self.runs) if self.runs else None

    def sps(self):
        m = self.median_s()
        return 1.0 / m if m else None

    def best_sps(self):
        return 1.0 / min(r["t"] for r in self.runs) if self.runs else None

    def rss_mb(self):
        v = [r["rss_kb"] for r in self.runs if r["rss_kb"]]
        return max(v) / 1024.0 if v else None


def run_config(c, want_profile):
    cmd = list(c.cmd) + (["--profile"] if want_profile else [])
    rc, out, err, rss, wall = run_process(cmd, env=c.env)
    res, prof = parse_result(out)
    if rc != 0 or res is None:
        tail = [x for x in (err or out).strip().splitlines() if x.strip()][-3:]
        c.error = "exit %d: %s" % (rc, " | ".join(tail))
        log("  %s: FAILED (%s)" % (c.label, c.error))
        return
    if res.get("unsupported"):
        c.unsupported = res["unsupported"]
        log("  %s: unsupported (%s)" % (c.label, c.unsupported))
        return
    t = statistics.median(res["times"])
    c.runs.append({"t": t, "times": res["times"], "rss_kb": rss, "wall_s": wall})
    if c.first is None:
        c.first = res
    if prof:
        c.profile = prof
        c.profile_steps = res.get("profile_steps", 0)
    log("  %-50s %7.3f s/step (%s)  rss %5.0f MB  loss %.4f -> %.4f" % (
        c.label, t, " ".join("%.3f" % x for x in res["times"]), rss / 1024.0, res["losses"][0], res["losses"][-1]))


def pivot_cmd(a, step, backend, threads, warmup, steps):
    return [a.pivot, "run", os.path.join(HERE, "mini_mllm.lua"), "--step", step, "--backend", backend,
            "--threads", str(threads), "--warmup", str(warmup), "--steps", str(steps)]


def torch_cmd(a, step, t):
    return [a.python, os.path.join(HERE, "torch_mllm.py"), "--step", step, "--threads", str(t),
            "--warmup", str(a.warmup), "--steps", str(a.steps), "--optimizer", a.torch_optimizer,
            "--attention", a.torch_attention]


_DEVICES = {}


def devices_output(a):
    """stdout of `pivot devices` (run once)"""
    if a.pivot not in _DEVICES:
        _DEVICES[a.pivot] = subprocess.run([a.pivot, "devices"], capture_output=True, text=True, timeout=120,
                                           cwd=ROOT).stdout
    return _DEVICES[a.pivot]


def own_gemm(a):
    """the variant name of pivot's own GEMM kernels (`pivot devices`: "GEMM by pivot's avx512 kernels"), or None"""
    try:
        out = devices_output(a)
    except Exception:  # noqa: BLE001
        return None
    m = re.search(r"GEMM by pivot's (\S+) kernels", out)
    return m.group(1) if m else None


def vulkan_status(a):
    """(available, the vulkan line of `pivot devices`)"""
    try:
        out = devices_output(a)
    except Exception as e:  # noqa: BLE001
        return False, "pivot devices failed: %s" % e
    lines = [x.strip() for x in out.splitlines() if x.startswith("vulkan")]
    if not lines:
        return False, "no vulkan line in `pivot devices`"
    ok = not lines[0].startswith("vulkan: unavailable")
    sel = next((x for x in lines if "[selected]" in x), lines[0])
    return ok, sel


def best(cs):
    cs = [c for c in cs if c.sps()]
    return max(cs, key=lambda c: c.sps()) if cs else None


def fmt(v, spec):
    return format(v, spec) if v is not None else "-"


def main():
    a = parse()
    kinds = [s for s in a.kinds.split(",") if s]
    threads = [int(x) for x in a.threads.split(",") if x]
    if not os.access(a.pivot, os.X_OK):
        sys.exit("compare.py: %s is not an executable (build pivot first, or use bench/run.sh)" % a.pivot)
    if not a.no_torch and not os.access(a.python, os.X_OK):
        sys.exit("compare.py: %s not found (bench/run.sh creates the venv; or pass --no-torch)" % a.python)
    base_env = dict(os.environ)
    for k in ("PIVOT_BACKEND", "PIVOT_THREADS", "PIVOT_DEVICE"):
        base_env.pop(k, None)

    # pivot's OpenBLAS: the core it picks, and whether to add rows with the CPU's real class
    lib = openblas_path(a.pivot)
    core = openblas_core(lib, base_env)
    own = own_gemm(a)
    blas_variants = [("", None)]  # (row suffix, (env var, value) or None)
    extra_core = None
    if own:  # pivot's own GEMM kernels: extra rows with its OpenBLAS fallback
        blas_variants.append((", PIVOT_GEMM=openblas", ("PIVOT_GEMM", "openblas")))
    else:
        want = cpu_class() if a.openblas_core == "auto" else (None if a.openblas_core == "none" else a.openblas_core)
        extra_core = want if (want and core and want.lower() != core.lower()) else None
        if extra_core:
            blas_variants.append((", OPENBLAS_CORETYPE=%s" % extra_core, ("OPENBLAS_CORETYPE", extra_core)))

    configs, groups = [], []  # groups: (row label, step, [configs])
    for st in kinds:
        for suffix, ct in blas_variants:
            env = dict(base_env)
            if ct:
                env[ct[0]] = ct[1]
            grp = []
            for t in threads:
                c = Config("pivot cpu %s, %d thread%s%s" % (st, t, "s" if t > 1 else "", suffix),
                           pivot_cmd(a, st, "cpu", t, a.warmup, a.steps), env, "pivot", st, t, suffix)
                grp.append(c)
            configs += grp
            groups.append(("pivot" + suffix, st, grp))
        if not a.no_torch:
            grp = []
            for b in threads:
                for t in threads:
                    env = dict(base_env)
                    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(b)
                    grp.append(Config("torch %s, BLAS/OMP %d, set_num_threads %d" % (st, b, t), torch_cmd(a, st, t),
                                      env, "torch", st, (b, t), "torch"))
            configs += grp
            groups.append(("torch", st, grp))

    log("bench: %d runs x (%d warm-up + %d timed steps) per configuration, %d configurations, interleaved; "
        "pivot's GEMM: %s%s" % (a.runs, a.warmup, a.steps, len(configs),
                                ("pivot's %s kernels (also run with PIVOT_GEMM=openblas, OpenBLAS core %s)" % (own, core))
                                if own else "OpenBLAS core %s" % (core or "?"),
                                (" (also run with OPENBLAS_CORETYPE=%s)" % extra_core) if extra_core else ""))
    t_all = time.perf_counter()
    load0 = os.getloadavg()
    for r in range(a.runs):
        log("round %d/%d" % (r + 1, a.runs))
        k = r % len(configs)
        for c in configs[k:] + configs[:k]:
            if c.error or c.unsupported:
                continue
            # pivot's per-op profile: a few extra steps after the timed ones, in the last round
            run_config(c, want_profile=(c.side == "pivot" and r == a.runs - 1))

    # Vulkan: pivot's other backend on the same steps (lavapipe here: one run of few steps)
    vk = []
    vk_line = None
    if not a.no_vulkan:
        ok, vk_line = vulkan_status(a)
        if ok:
            log("vulkan: %s" % vk_line)
            for st in kinds:
                c = Config("pivot vulkan %s" % st, pivot_cmd(a, st, "vulkan", max(threads), 1, 1 if a.quick else 2),
                           base_env, "vulkan", st, max(threads), "vulkan")
                run_config(c, want_profile=False)
                vk.append(c)

    # GEMM tables
    gemm = []
    if not a.no_gemm:
        for suffix, ct in (blas_variants[:1] if own else blas_variants):  # bench_gemm shows both sides itself
            env = dict(base_env)
            if ct:
                env[ct[0]] = ct[1]
            title = ("GEMM by pivot's %s kernels, OpenBLAS core %s" % (own, core or "?")) if own else \
                ("OpenBLAS core %s" % ((ct[1] if ct else None) or core or "?") +
                 (" (OPENBLAS_CORETYPE)" if ct else " (as detected)"))
            if os.access(a.gemm, os.X_OK):
                log("bench_gemm --quick (%s)" % title)
                p = subprocess.run([a.gemm, "--quick"], capture_output=True, text=True, cwd=ROOT, env=env)
                gemm.append((title, (p.stdout + (p.stderr if p.returncode else "")).rstrip()))
            else:
                gemm.append((title, "(%s not found: build the bench_gemm target)" % a.gemm))
    load1 = os.getloadavg()
    log("bench: done in %.0f s" % (time.perf_counter() - t_all))

    # ------------------------------------------------------------------------------------------ report
    tinfo = next((c.first for c in configs if c.side == "torch" and c.first), None)
    print()
    print("## mini-MLLM training steps, pivot CPU vs PyTorch CPU%s" % (
        (" %s" % tinfo["torch"]) if tinfo else ""))
    print("batch 8 (DPO: 8 pairs + a frozen reference forward), AdamW + clipping; %d interleaved runs x %d timed steps "
          "(after %d warm-up), median; each side at its fastest thread setting" % (a.runs, a.steps, a.warmup))
    print()
    print("| step | pivot cpu steps/s | torch best steps/s (threads) | ratio | pivot peak RSS MB | torch peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for st in kinds:
        tb = best(next((g for lab, s, g in groups if lab == "torch" and s == st), []))
        for suffix, ct in blas_variants:
            grp = next(g for lab, s, g in groups if lab == "pivot" + suffix and s == st)
            pb = best(grp)
            name = st.upper() + (" (%s=%s)" % ct if ct else "")
            if pb is None:
                err = next((c.error for c in grp if c.error), "no runs")
                print("| %s | failed: %s | | | | |" % (name, err))
                continue
            pcol = "%.2f (%d thread%s)" % (pb.sps(), pb.threads, "s" if pb.threads > 1 else "")
            if tb:
                tcol = "%.2f (BLAS/OMP %d, set_num_threads %d)" % (tb.sps(), tb.threads[0], tb.threads[1])
                ratio = "%.2fx" % (pb.sps() / tb.sps())
                trss = fmt(tb.rss_mb(), ".0f")
            else:
                tcol, ratio, trss = "-", "-", "-"
            print("| %s | %s | %s | %s | %s | %s |" % (name, pcol, tcol, ratio, fmt(pb.rss_mb(), ".0f"), trss))
    if not a.no_vulkan:
        if vk_line is None or not vk:
            why = (vk_line or "?").split("vulkan: unavailable:", 1)[-1].strip()
            print("| vulkan | vulkan: unavailable (%s) | | | | |" % why)
        for c in vk:
            name = "%s vulkan" % c.step.upper()
            if c.unsupported:
                print("| %s | vulkan: unsupported (%s) | | | | |" % (name, c.unsupported))
            elif c.error:
                print("| %s | vulkan: failed (%s) | | | | |" % (name, c.error))
            else:
                print("| %s | %.3f | | | %s | |" % (name, c.sps(), fmt(c.rss_mb(), ".0f")))
    print()
    print("The same from each configuration's fastest run (least disturbed by other load on the machine):")
    print()
    print("| step | pivot cpu steps/s | torch best steps/s (threads) | ratio |")
    print("|---|---|---|---|")
    for st in kinds:
        tgrp = next((g for lab, s, g in groups if lab == "torch" and s == st), [])
        tb = max((c for c in tgrp if c.runs), key=lambda c: c.best_sps(), default=None)
        for suffix, ct in blas_variants:
            grp = next(g for lab, s, g in groups if lab == "pivot" + suffix and s == st)
            pb = max((c for c in grp if c.runs), key=lambda c: c.best_sps(), default=None)
            if pb is None:
                continue
            name = st.upper() + (" (%s=%s)" % ct if ct else "")
            pcol = "%.2f (%d thread%s)" % (pb.best_sps(), pb.threads, "s" if pb.threads > 1 else "")
            if tb:
                print("| %s | %s | %.2f (BLAS/OMP %d, set_num_threads %d) | %.2fx |" % (
                    name, pcol, tb.best_sps(), tb.threads[0], tb.threads[1], pb.best_sps() / tb.best_sps()))
            else:
                print("| %s | %s | - | - |" % (name, pcol))
    print()
    print("load average (1 min) at the start and the end of the runs: %.1f, %.1f on %d cores" % (
        load0[0], load1[0], os.cpu_count() or 0))
    if tinfo:
        print("torch peak RSS includes ~%.0f MB that `import torch` alone takes (the PyPI wheel maps its CUDA "
              "libraries even on a CPU-only machine)." % (tinfo.get("rss_after_import_kb", 0) / 1024.0))
    if vk:
        print("vulkan: %s; %d warm-up + %d timed step(s), one run" % (vk_line, 1, 1 if a.quick else 2))
    print()
    print("All configurations: median s/step [min .. max of run medians], steps/s, peak RSS, loss first -> last")
    for c in configs + vk:
        if c.runs:
            ts = [r["t"] for r in c.runs]
            f = c.first
            extra = ""
            if c.side == "torch" and f.get("rss_after_import_kb"):
                extra = "  (RSS after import %.0f MB)" % (f["rss_after_import_kb"] / 1024.0)
            elif c.side in ("pivot", "vulkan"):
                extra = "  (arena %.0f MB, %d nodes, compile %.2f s)" % (f["peak_bytes"] / 2 ** 20, f["nodes"],
                                                                         f["compile_s"])
            print("  %-58s %7.3f s [%.3f .. %.3f] %6.2f/s  RSS %5.0f MB  loss %.4f -> %.4f%s" % (
                c.label, c.median_s(), min(ts), max(ts), c.sps(), c.rss_mb() or 0, f["losses"][0], f["losses"][-1],
                extra))
        else:
            print("  %-58s %s" % (c.label, c.error or ("unsupported: " + c.unsupported if c.unsupported else "no runs")))
    if tinfo:
        pinfo = next((c.first for c in configs if c.side == "pivot" and c.first), {})
        print("  parameters: pivot %s, torch %s; torch AdamW %s, attention %s" % (
            pinfo.get("params", "-"), tinfo["params"], tinfo["optimizer"], tinfo["attention"]))

    for title, text in gemm:
        print()
        print("## GEMM: pivot matmul vs direct OpenBLAS, bench_gemm --quick, %s" % title)
        print()
        print(text)

    for st in kinds:
        for suffix, ct in blas_variants:
            grp = next(g for lab, s, g in groups if lab == "pivot" + suffix and s == st)
            pb = best(grp)
            if pb is None:
                continue
            print()
            print("## pivot per-op profile, %s step: %s (ms summed over %d profiled steps)" % (
                st.upper(), pb.label, pb.profile_steps))
            print()
            print(pb.profile or "(no profile)")

    if a.json:
        with open(a.json, "w") as f:
            json.dump({c.label: {"runs": c.runs, "first": c.first, "error": c.error, "unsupported": c.unsupported,
                                 "profile": c.profile} for c in configs + vk}, f, indent=1)
    return 1 if any(c.error for c in configs) else 0


if __name__ == "__main__":
    sys.exit(main())
