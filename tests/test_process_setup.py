"""agent.process_setup: the process-wide settings monitor_agent.py applies at start."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_allocator_keeps_chunk_sized_blocks_in_the_heap() -> None:
    """After tuning, a freed 4 MiB block is reused: allocating it again faults no new pages."""
    probe = """
import resource, sys
from agent import process_setup
assert process_setup.tune_allocator()
def faults_for_blocks():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        block = bytes(4 << 20)       # a chunk-sized object, freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_for_blocks()
print(faults_for_blocks())
"""
    untuned = probe.replace("assert process_setup.tune_allocator()", "")
    tuned_faults = int(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True,
                                      capture_output=True, text=True).stdout)
    untuned_faults = int(subprocess.run([sys.executable, "-c", untuned], cwd=ROOT, check=True,
                                        capture_output=True, text=True).stdout)
    assert tuned_faults < 200 < untuned_faults    # 50 blocks of 1,024 pages each, untuned


def test_one_blas_thread_unless_the_operator_says_otherwise() -> None:
    code = "import os; from agent import process_setup; print(os.environ['OPENBLAS_NUM_THREADS'])"
    env = {"PATH": "/usr/bin:/bin"}
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True).stdout.strip() == "1"
    env["OPENBLAS_NUM_THREADS"] = "4"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True).stdout.strip() == "4"
