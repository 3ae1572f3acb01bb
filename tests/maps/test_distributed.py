"""Across processes: torchrun with two processes, and a run killed midway then resumed, give
the store of one uninterrupted process bit for bit."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from captum_prune import MapStore
from tests.maps import _job
from tests.maps._compare import assert_same_store

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(_job.__file__).resolve()


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _run(args, **extra):
    return subprocess.run([sys.executable] + args, cwd=ROOT, env=_env(**extra),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "store"
    _job.run(str(out))
    return out


def test_torchrun_two_processes_write_the_one_process_store(reference, tmp_path):
    out = tmp_path / "store"
    done = _run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                 str(JOB), str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    # Each rank took a disjoint half of the six shards and reported the same totals.
    reports = [line for line in done.stderr.splitlines() if "'world_size': 2" in line]
    assert len(reports) == 2 and all("'computed': 45" in line for line in reports)
    assert_same_store(out, reference)


def test_a_killed_run_resumes_to_the_same_store_and_refuses_a_changed_argument(reference,
                                                                              tmp_path):
    out = tmp_path / "store"
    killed = _run([str(JOB), str(out)], _CAPTUM_PRUNE_TEST_KILL_AFTER_SHARDS="2")
    assert killed.returncode == -signal.SIGKILL
    assert MapStore(out).missing_shards() == [2, 3, 4, 5]
    assert json.loads((out / "store.json").read_text())["complete"] is False
    # Both ranks refuse a changed argument, and nothing is written.
    refused = _run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                    str(JOB), str(out), "--sparsity", "0.5"])
    assert refused.returncode != 0
    assert "arguments.sparsity: stored 0.7, now 0.5" in refused.stderr
    assert MapStore(out).missing_shards() == [2, 3, 4, 5]
    # The same job resumes (here under torchrun) and completes the store as one process would.
    resumed = _run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                    str(JOB), str(out)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stderr.count("'computed': 29, 'skipped': 16") == 2
    assert_same_store(out, reference)
