"""Tests of ``captum-prune speed``: the measuring functions, the --quick run end to end, and
argument errors. Nothing here asserts how fast anything is."""
import json
import statistics
import time

import pytest
import torch

from captum_prune import cli
from captum_prune.cli import speed

MiB = 2**20


def test_time_call_measures_the_call():
    seconds = speed.time_call(lambda: time.sleep(0.05))
    assert 0.05 <= seconds < 5.0


def test_peak_memory_sees_a_transient_allocation():
    def allocate_and_free():
        block = torch.ones(64 * MiB // 4)  # 64 MiB, written so every page is resident
        time.sleep(0.05)  # let the sampler see it
        del block

    _, peak = speed.peak_memory_call(allocate_and_free)
    if peak is None:
        pytest.skip("no /proc/self/statm on this platform")
    assert 56 * MiB <= peak <= 256 * MiB
    _, idle = speed.peak_memory_call(lambda: time.sleep(0.05))
    assert idle < peak / 2


def test_compare_alternates_after_warmups():
    calls = []

    def method(name):
        return lambda: calls.append(name)

    results = speed.compare([("a", method("a"), 3), ("b", method("b"), 1), ("c", method("c"), 2)])
    # One unmeasured call of the first, one warm-up each, then round robin over what is left.
    assert calls == ["a", "a", "b", "c", "a", "b", "c", "a", "c", "a"]
    assert [len(results[n][0]) for n in "abc"] == [3, 1, 2]
    for times, _, cpu_times in results.values():
        assert len(cpu_times) == len(times) and all(t >= 0 for t in times + cpu_times)


def test_compare_without_warmup_runs_only_the_timed_calls():
    calls = []
    speed.compare([("a", lambda: calls.append("a"), 2), ("b", lambda: calls.append("b"), 2)],
                  warmup=False)
    assert calls == ["a", "b", "a", "b"]


def test_compare_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        speed.compare([("a", lambda: None, 0)])


def test_profile_phases_times_each_labelled_step():
    def fake_call():
        with torch.profiler.record_function("PrunedGradient.score"):
            time.sleep(0.06)
        with torch.profiler.record_function("PrunedGradient.select"):
            time.sleep(0.02)
        time.sleep(0.03)  # unlabelled: counts only in the total

    phases = speed.profile_phases(fake_call)
    assert set(phases) == {"score", "select", "total"}  # no pruned_pass range was entered
    assert 0.06 <= phases["score"] < 1.0 and 0.02 <= phases["select"] < phases["score"]
    assert phases["total"] >= phases["score"] + phases["select"] + 0.03


def _row(method, batch, median, peak, model="m"):
    return speed.Measurement(
        model=model, device="cpu", batch_size=batch, method=method, repeats=1,
        median_s=median, per_example_s=median / batch, times_s=[median], peak_extra_bytes=peak,
        median_cpu_s=median / 2,
    )


def test_ratios_are_against_saliency_of_the_same_setting():
    rows = [
        _row("Saliency", 1, 2.0, 100), _row("X", 1, 5.0, 150),
        _row("Saliency", 8, 4.0, None), _row("X", 8, 6.0, 10),
        _row("X", 1, 3.0, 10, model="other"),
    ]
    speed.add_ratios(rows)
    assert rows[1].time_ratio == pytest.approx(2.5) and rows[1].memory_ratio == pytest.approx(1.5)
    assert rows[1].cpu_ratio == pytest.approx(2.5)
    assert rows[3].time_ratio == pytest.approx(1.5) and rows[3].memory_ratio is None
    assert rows[4].time_ratio is None  # no Saliency row for that model


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speed")
    json_path, md_path = folder / "speed.json", folder / "speed.md"
    # One thread: on a loaded 2-core machine, idle-waiting thread pools make tiny calls slow.
    threads = torch.get_num_threads()
    status = cli.main(
        ["speed", "--quick", "--threads", "1", "--profile", "--json", str(json_path),
         "--markdown", str(md_path)]
    )
    assert torch.get_num_threads() == threads  # restored after the run
    return status, json.loads(json_path.read_text()), md_path.read_text()


def _saliency_row(rows, row):
    return next(r for r in rows
                if r["method"] == "Saliency" and r["batch_size"] == row["batch_size"])


def test_quick_run_writes_every_row(quick_run):
    status, report, markdown = quick_run
    assert status == 0
    assert {"machine", "settings", "rows"} <= set(report)
    for key in ("cpu", "cpu_count", "torch", "captum", "device_option", "torch_threads"):
        assert key in report["machine"]
    assert report["machine"]["torch_threads"] == 1 and report["settings"]["threads"] == 1
    rows = report["rows"]
    methods = ["Saliency", "PrunedGradient(taylor)", "IntegratedGradients(50)"]
    expected = [(b, m) for b in (1, 2) for m in methods]
    assert [(r["batch_size"], r["method"]) for r in rows] == expected
    for row in rows:
        assert row["model"] == "resnet18" and row["device"] == "cpu"
        assert len(row["times_s"]) == row["repeats"] == 2
        assert row["median_s"] == pytest.approx(statistics.median(row["times_s"]))
        assert row["per_example_s"] == pytest.approx(row["median_s"] / row["batch_size"])
        assert row["method"] in markdown


def test_quick_run_ratios_come_from_the_same_run(quick_run):
    _, report, _ = quick_run
    rows = report["rows"]
    for row in rows:
        base = _saliency_row(rows, row)
        assert row["time_ratio"] == pytest.approx(row["median_s"] / base["median_s"])
        if base["median_cpu_s"]:
            assert row["cpu_ratio"] == pytest.approx(row["median_cpu_s"] / base["median_cpu_s"])
        if row["peak_extra_bytes"] is not None and base["peak_extra_bytes"]:
            ratio = row["peak_extra_bytes"] / base["peak_extra_bytes"]
            assert row["memory_ratio"] == pytest.approx(ratio)


def test_quick_run_profiles_the_steps_of_pruned_gradient(quick_run):
    _, report, markdown = quick_run
    assert "Steps of one profiled call" in markdown
    for row in report["rows"]:
        if not row["method"].startswith("PrunedGradient"):
            assert row["phases_s"] is None
            continue
        phases = row["phases_s"]
        assert set(phases) == {"score", "select", "pruned_pass", "total"}
        # The steps are disjoint parts of the one call.
        assert sum(phases[k] for k in ("score", "select", "pruned_pass")) <= phases["total"]
        base = _saliency_row(report["rows"], row)
        assert row["phase_ratios"]["score"] == pytest.approx(phases["score"] / base["median_s"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "resnet18,alexnet"], "allowed: resnet18, resnet50, vgg16"),
        (["--criteria", "gradcam"], "allowed: taylor, integrated_gradients"),
        (["--device", "tpu"], "--device"),
        (["--size", "8"], "--size"),
        (["--repeats", "0"], "--repeats"),
    ],
)
def test_bad_arguments_are_user_errors(argv, message, capsys):
    assert cli.main(["speed"] + argv) == 2
    assert message in capsys.readouterr().err


def test_bad_batch_sizes_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["speed", "--batch-sizes", "1,0"])
    assert exit_info.value.code == 2
    assert "--batch-sizes" in capsys.readouterr().err


def test_digits_model_runs_with_random_weights_when_none_is_cached(tmp_path, monkeypatch):
    from captum_prune.zoo import training

    def no_training(*args, **kwargs):
        raise AssertionError("speed must never train the digits model")

    monkeypatch.setenv("CAPTUM_PRUNE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(training, "train_classifier", no_training)
    path = tmp_path / "digits.json"
    status = cli.main(["speed", "--models", "digits", "--batch-sizes", "2", "--repeats", "2",
                       "--device", "cpu", "--threads", "1", "--json", str(path)])
    assert status == 0
    rows = json.loads(path.read_text())["rows"]
    assert [r["method"] for r in rows] == [
        "Saliency", "PrunedGradient(taylor)", "IntegratedGradients(50)"]
    assert all(r["model"] == "digits" and r["batch_size"] == 2 for r in rows)
    assert rows[0]["time_ratio"] == pytest.approx(1.0)
    assert all(r["iqr_s"] is not None and r["iqr_s"] >= 0 for r in rows)


def test_cifar_resnet8_runs_at_its_own_input_size(tmp_path, capsys):
    path = tmp_path / "resnet8.json"
    status = cli.main(["speed", "--models", "resnet8", "--batch-sizes", "1", "--repeats", "2",
                       "--no-ig", "--device", "cpu", "--threads", "1", "--json", str(path)])
    assert status == 0
    assert "resnet8 (random weights, 32x32) batch 1" in capsys.readouterr().out
    rows = json.loads(path.read_text())["rows"]
    assert [(r["model"], r["method"]) for r in rows] == [
        ("resnet8", "Saliency"), ("resnet8", "PrunedGradient(taylor)")]
    assert rows[1]["time_ratio"] > 0


def test_busy_machine_and_implausible_ratios_are_warned_about():
    from captum_prune.cli.speed import Measurement, add_ratios, busy_warnings

    def row(method, median, iqr):
        return Measurement(model="m", device="cpu", batch_size=8, method=method, repeats=5,
                           median_s=median, per_example_s=median / 8, times_s=[median] * 5,
                           peak_extra_bytes=None, iqr_s=iqr)

    rows = [row("Saliency", 1.0, 0.01), row("PrunedGradient(taylor)", 0.49, 0.3),
            row("IntegratedGradients(50)", 2.0, 0.0)]
    add_ratios(rows)
    notes = busy_warnings(rows, {"load_average_at_start": [3.2, 3, 3], "cpu_count": 2,
                                 "torch_threads": 2})
    text = " ".join(notes)
    assert "load average 3.2" in text and "1 of 3 rows spread widely" in text
    assert "faster than Saliency" in text and "IntegratedGradients(50) came out" in text
    quiet = [row("Saliency", 1.0, 0.01), row("PrunedGradient(taylor)", 2.0, 0.02)]
    add_ratios(quiet)
    assert busy_warnings(quiet, {"load_average_at_start": [0.1, 0, 0], "cpu_count": 2,
                                 "torch_threads": 2}) == []


def test_speed_output_file_is_checked_before_timing(tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert cli.main(["speed", "--quick", "--json", str(blocker / "s.json")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
