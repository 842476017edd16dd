"""What the interleaved benchmark scripts share (bench-pairs, bench-json, bench-typed).

On these VMs speed drifts over minutes, so every figure is a ratio of commands run back to back, in a
rotating order, and the median of those ratios is the figure to quote.
"""
import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "bench")
PEERS = os.path.join(BENCH, "peers")
PIPELINES = os.path.join(ROOT, "benches", "pipelines")
FLOWENGINE = os.path.join(ROOT, "target", "release", "flowengine")


def out_dir():
    """Where `scripts/bench` keeps the data ($FE_BENCH_DIR, /tmp/flowengine-bench)."""
    return os.environ.get("FE_BENCH_DIR", "/tmp/flowengine-bench")


def build_release():
    subprocess.run(["cargo", "build", "--release", "-p", "flowengine-cli", "--quiet"], cwd=ROOT, check=True)


def timed(cmd):
    """Wall seconds of `cmd`, which must succeed."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss_mib(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, check=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True).stderr.strip().splitlines()[-1]
    return int(out) / 1024


def interleaved(jobs, rows, rounds):
    """Run each job's commands ({tool: cmd}, FlowEngine first) once to warm up, then `rounds` times
    in a rotating order; print the times, the median ratios to each peer, and FlowEngine's peak RSS."""
    for job, tools in jobs.items():
        for cmd in tools.values():
            timed(cmd)
        times = {tool: [] for tool in tools}
        names = list(tools)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for tool in order:
                times[tool].append(timed(tools[tool]))
        rss = peak_rss_mib(tools["flowengine"])
        print(f"{job}, {rows} rows, {rounds} rounds (wall seconds)")
        for tool in names:
            print(f"  {tool:10} " + " ".join(f"{t:.2f}" for t in times[tool]))
        for peer in names[1:]:
            ratios = [a / b for a, b in zip(times["flowengine"], times[peer])]
            print(f"  flowengine / {peer}: median {statistics.median(ratios):.3f} "
                  f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
        print(f"  flowengine peak RSS {rss:.0f} MiB\n", flush=True)
