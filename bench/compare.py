#!/usr/bin/env python3
"""bench/compare.py: runs pivot and PyTorch on the mini-MLLM SFT and DPO training steps, interleaved, each run in its
own process, and prints one table (steps/s, ratio, peak RSS), the Vulkan rows, the GEMM table and pivot's per-op
profiles. bench/run.sh is the documented entry point (it builds pivot and installs torch first).

    python3 bench/compare.py --pivot build/pivot [--python bench/.venv/bin/python] [--gemm build/bench_gemm]
                             [--quick] [--no-torch] [--no-vulkan] [--runs N] [--steps K] [--warmup W]

Method: a run is one process that builds the model and the step, does W untimed warm-up steps, then K timed steps;
its time is the median of its K step times. Each configuration gets N runs (default 5; --quick 3); the runs of all
configurations are interleaved round by round (the order rotates each round), and the reported figure is the
median over the N runs. Peak RSS is the ru_maxrss of the run's process (from wait4), the largest over its runs.
PyTorch is run in four thread settings: OMP_NUM_THREADS = MKL_NUM_THREADS = b at process start and
torch.set_num_threads(t), for b, t in {1, 2}; the table shows the fastest and all are listed below it.
This script uses only the Python standard library (it runs with the system python3; torch runs in the venv).
"""
import argparse
import json
import os
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
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="pivot's threads (default: all cores)")
    ap.add_argument("--torch-threads", default="1,2", help="thread counts tried for torch (b and t), e.g. 1,2")
    ap.add_argument("--torch-optimizer", default="foreach", choices=["foreach", "fused", "loop"])
    ap.add_argument("--torch-attention", default="sdpa", choices=["sdpa", "sdpa_gqa", "math"])
    ap.add_argument("--steps-kinds", default="sft,dpo", help="which steps to run (sft,dpo)")
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
        rc, rss = None, 0
        while rc is None:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                rc, rss = os.waitstatus_to_exitcode(status), ru.ru_maxrss
                p.returncode = rc  # keep Popen from waiting again
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                p.returncode = 124
                rc, rss = 124, ru.ru_maxrss
                break
            time.sleep(0.02)
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


class Config:
    def __init__(self, key, label, cmd, env, side, step):
        self.key, self.label, self.cmd, self.env, self.side, self.step = key, label, cmd, env, side, step
        self.runs = []  # dicts: run time (median step), all times, rss
        self.profile = None
        self.error = None
        self.unsupported = None
        self.first = None  # the first RESULT (losses etc.)

    def median_s(self):
        return statistics.median(r["t"] for r in self.runs) if self.runs else None

    def sps(self):
        m = self.median_s()
        return 1.0 / m if m else None

    def rss_mb(self):
        v = [r["rss_kb"] for r in self.runs if r["rss_kb"]]
        return max(v) / 1024.0 if v else None


def run_config(c, want_profile):
    cmd = list(c.cmd) + (["--profile"] if want_profile and c.side == "pivot" else [])
    rc, out, err, rss, wall = run_process(cmd, env=c.env)
    res, prof = parse_result(out)
    if rc != 0 or res is None:
        tail = (err or out).strip().splitlines()[-3:]
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
    log("  %-34s %7.3f s/step  (%s)  rss %6.0f MB  loss %.4f -> %.4f" % (
        c.label, t, ", ".join("%.3f" % x for x in res["times"]), rss / 1024.0, res["losses"][0], res["losses"][-1]))


def pivot_cmd(a, step, backend, warmup, steps):
    return [a.pivot, "run", os.path.join(HERE, "mini_mllm.lua"), "--step", step, "--backend", backend,
            "--threads", str(a.threads), "--warmup", str(warmup), "--steps", str(steps)]


def torch_cmd(a, step, t):
    return [a.python, os.path.join(HERE, "torch_mllm.py"), "--step", step, "--threads", str(t),
            "--warmup", str(a.warmup), "--steps", str(a.steps), "--optimizer", a.torch_optimizer,
            "--attention", a.torch_attention]


def vulkan_status(a):
    """(available, text of `pivot devices` vulkan line)"""
    try:
        out = subprocess.run([a.pivot, "devices"], capture_output=True, text=True, timeout=120, cwd=ROOT).stdout
    except Exception as e:  # noqa: BLE001
        return False, "pivot devices failed: %s" % e
    for line in out.splitlines():
        if line.startswith("vulkan"):
            return not line.startswith("vulkan: unavailable"), line.strip()
    return False, "no vulkan line in `pivot devices`"


def fmt(v, spec):
    return format(v, spec) if v is not None else "-"


def main():
    a = parse()
    steps = [s for s in a.steps_kinds.split(",") if s]
    tthreads = [int(x) for x in a.torch_threads.split(",") if x]
    base_env = dict(os.environ)
    pivot_env = dict(base_env)
    pivot_env.pop("PIVOT_BACKEND", None)
    if not os.access(a.pivot, os.X_OK):
        sys.exit("compare.py: %s is not an executable (build pivot first, or bench/run.sh)" % a.pivot)

    configs = []  # per step: pivot, torch variants
    for st in steps:
        configs.append(Config(("pivot", st), "pivot cpu %s" % st, pivot_cmd(a, st, "cpu", a.warmup, a.steps),
                              pivot_env, "pivot", st))
        if not a.no_torch:
            for b in tthreads:
                for t in tthreads:
                    env = dict(base_env)
                    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(b)
                    configs.append(Config(("torch", st, b, t), "torch %s (BLAS/OMP %d, set_num_threads %d)" % (st, b, t),
                                          torch_cmd(a, st, t), env, "torch", st))
    if not a.no_torch and not os.access(a.python, os.X_OK):
        sys.exit("compare.py: %s not found (bench/run.sh creates the venv; or pass --no-torch)" % a.python)

    log("bench: %d runs x (%d warm-up + %d timed steps) per configuration, %d configurations, interleaved"
        % (a.runs, a.warmup, a.steps, len(configs)))
    t_all = time.perf_counter()
    for r in range(a.runs):
        log("round %d/%d" % (r + 1, a.runs))
        k = r % len(configs)
        for c in configs[k:] + configs[:k]:
            if c.error or c.unsupported:
                continue
            run_config(c, want_profile=(c.side == "pivot" and c.profile is None))

    # Vulkan: pivot's other backend on the same steps (lavapipe here: few steps, one run)
    vk_rows = []
    if not a.no_vulkan:
        ok, line = vulkan_status(a)
        if not ok:
            vk_rows.append(("vulkan", None, "vulkan: unavailable (%s)" % line))
        else:
            log("vulkan: %s" % line)
            for st in steps:
                c = Config(("vulkan", st), "pivot vulkan %s" % st, pivot_cmd(a, st, "vulkan", 1, 2 if a.quick else 3),
                           pivot_env, "vulkan", st)
                run_config(c, want_profile=False)
                vk_rows.append((st, c, line))

    # GEMM table
    gemm_text = None
    if not a.no_gemm:
        if os.access(a.gemm, os.X_OK):
            log("bench_gemm --quick")
            p = subprocess.run([a.gemm, "--quick"], capture_output=True, text=True, cwd=ROOT)
            gemm_text = (p.stdout + (p.stderr if p.returncode else "")).rstrip()
        else:
            gemm_text = "(%s not found: build the bench_gemm target)" % a.gemm
    log("bench: done in %.0f s" % (time.perf_counter() - t_all))

    # ------------------------------------------------------------------------------------------ report
    by = {c.key: c for c in configs}
    print()
    print("## mini-MLLM training steps: pivot CPU vs PyTorch CPU (batch 8; DPO: 8 pairs + frozen reference; "
          "%d runs x %d steps, median)" % (a.runs, a.steps))
    print()
    print("| step | pivot cpu steps/s | torch best steps/s (threads) | ratio | pivot peak RSS MB | torch peak RSS MB |")
    print("|---|---|---|---|---|---|")
    best_of = {}
    for st in steps:
        pc = by[("pivot", st)]
        best = None
        if not a.no_torch:
            for b in tthreads:
                for t in tthreads:
                    c = by[("torch", st, b, t)]
                    if c.sps() and (best is None or c.sps() > best.sps()):
                        best = c
        best_of[st] = best
        if best:
            b, t = best.key[2], best.key[3]
            tb = "%.2f (BLAS/OMP %d, set_num_threads %d)" % (best.sps(), b, t)
            ratio = "%.2fx" % (pc.sps() / best.sps()) if pc.sps() else "-"
            trss = fmt(best.rss_mb(), ".0f")
        else:
            tb, ratio, trss = "-", "-", "-"
        pv_sps = fmt(pc.sps(), ".2f") if not pc.error else "failed: " + pc.error
        print("| %s | %s | %s | %s | %s | %s |" % (st.upper(), pv_sps, tb, ratio, fmt(pc.rss_mb(), ".0f"), trss))
    for st, c, line in vk_rows:
        if c is None:
            print("| vulkan | %s | | | | |" % line)
        elif c.unsupported:
            print("| %s vulkan | vulkan: unsupported (%s) | | | | |" % (st.upper(), c.unsupported))
        elif c.error:
            print("| %s vulkan | vulkan: failed (%s) | | | | |" % (st.upper(), c.error))
        else:
            print("| %s vulkan (%s) | %.3f | | | %s | |" % (st.upper(), line.split(":", 1)[-1].strip()[:60], c.sps(),
                                                           fmt(c.rss_mb(), ".0f")))
    print()
    print("Per configuration: median s/step over runs [min .. max of the run medians], peak RSS, first -> last loss")
    for c in configs:
        if c.runs:
            ts = [r["t"] for r in c.runs]
            first = c.first
            extra = ""
            if c.side == "torch" and first.get("rss_after_import_kb"):
                extra = "  (RSS after `import torch`: %.0f MB)" % (first["rss_after_import_kb"] / 1024.0)
            if c.side == "pivot":
                extra = "  (plan arena %.0f MB, %d nodes, compile %.2f s)" % (first["peak_bytes"] / 2 ** 20,
                                                                              first["nodes"], first["compile_s"])
            print("  %-44s %7.3f s [%.3f .. %.3f]  %6.2f steps/s  RSS %5.0f MB  loss %.4f -> %.4f%s" % (
                c.label, c.median_s(), min(ts), max(ts), c.sps(), c.rss_mb() or 0, first["losses"][0],
                first["losses"][-1], extra))
        else:
            print("  %-44s %s" % (c.label, c.error or c.unsupported or "no runs"))
    tinfo = next((c.first for c in configs if c.side == "torch" and c.first), None)
    if tinfo:
        print("  torch %s, AdamW(foreach=%s), attention %s; params: pivot %s, torch %s" % (
            tinfo["torch"], tinfo["optimizer"], tinfo["attention"],
            next((c.first["params"] for c in configs if c.side == "pivot" and c.first), "-"), tinfo["params"]))

    print()
    print("## GEMM: pivot matmul vs direct OpenBLAS (build/bench_gemm --quick)")
    print()
    print(gemm_text if gemm_text is not None else "(skipped)")

    for st in steps:
        c = by[("pivot", st)]
        print()
        print("## pivot per-op profile, %s step (cpu, %d threads; ms summed over %d profiled steps)" % (
            st.upper(), a.threads, (c.first or {}).get("profile_steps", 0)))
        print()
        print(c.profile or "(no profile)")

    if a.json:
        with open(a.json, "w") as f:
            json.dump({c.label: {"runs": c.runs, "first": c.first, "error": c.error, "unsupported": c.unsupported}
                       for c in configs}, f, indent=1)
    failed = [c for c in configs if c.error]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
