#!/usr/bin/env python3
"""How long a run takes to end after Ctrl-C while it reads reference sets from a cold disk
cache (README, "Signals"). Needs root (it drops the page cache) and a disk cache that already
holds the model's sets (run `backwork run --labels all` once first).

    python3 scripts/ctrlc_latency.py target/release/backwork [TRIES]
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def main():
    binary = sys.argv[1]
    tries = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    took = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(tries):
            subprocess.run("sync; echo 3 > /proc/sys/vm/drop_caches", shell=True, check=True)
            out = os.path.join(tmp, f"run{k}")
            shutil.rmtree(out, ignore_errors=True)
            p = subprocess.Popen([binary, "run", "--labels", "all", "--out", out],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            t = time.time()
            p.send_signal(signal.SIGINT)
            p.wait()
            took.append(time.time() - t)
    print(binary, " ".join(f"{s:.2f} s" for s in took))


if __name__ == "__main__":
    main()
