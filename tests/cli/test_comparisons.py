"""The benchmark's comparisons: verdicts from paired CIs, their JSON round trip, the report's
CI cells, bands and verdict paragraphs, the new sections and --model-seeds."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from captum_prune import cli
from captum_prune.cli import benchmark, report
from captum_prune.cli.errors import CommandError
from captum_prune.cli.methods import build_methods
from captum_prune.cli.results import (
    BenchmarkResults,
    Interval,
    ProtocolComparison,
    pairwise_verdict,
)

TINY = ["--threads", "1", "--no-progress", "--model-epochs", "2", "--n-eval", "6"]


@pytest.mark.parametrize("paired, better, verdict", [
    # method - PrunedGradient; lower is better: a positive difference means PG wins.
    ([Interval(0.2, 0.1, 0.3)], "lower", "wins"),
    ([Interval(0.2, 0.1, 0.3)], "higher", "loses"),
    ([Interval(-0.2, -0.3, -0.1)], "higher", "wins"),
    ([Interval(0.1, -0.05, 0.3)], "lower", "ties"),       # the CI contains 0
    ([Interval(0.0, 0.0, 0.3)], "higher", "ties"),        # 0 on the boundary counts as inside
    ([Interval(0.2, 0.1, 0.3), Interval(0.1, -0.1, 0.2)], "lower", "ties"),   # one model ties
    ([Interval(0.2, 0.1, 0.3), Interval(-0.2, -0.3, -0.1)], "lower", "ties"),  # models disagree
    ([Interval(0.2, 0.1, 0.3), Interval(0.1, 0.05, 0.2)], "lower", "wins"),
    ([Interval(0.2, None, None)], "lower", "not a result"),
    ([], "lower", "not a result"),
])
def test_pairwise_verdict(paired, better, verdict):
    assert pairwise_verdict(paired, better) == verdict


def test_pairwise_verdict_rejects_unknown_direction():
    with pytest.raises(ValueError, match="better"):
        pairwise_verdict([Interval(0.1, 0.0, 0.2)], "bigger")


def _scores(rng, n=40):
    base = rng.normal(size=n)
    return {
        "PrunedGradient": {"values": base, "curve": np.stack([base, base + 1], 1),
                           "tied_share": 0.0},
        "Better": {"values": base + 1.0, "curve": np.stack([base, base + 2], 1),
                   "tied_share": 0.25},
        "Same": {"values": base + rng.normal(scale=0.01, size=n) - 0.0005,
                 "curve": np.stack([base, base], 1), "tied_share": 0.0},
        "Random": {"values": base - 1.0, "curve": np.stack([base, base], 1),
                   "tied_share": 0.0},
    }


def _comparison(n_models=1, not_a_result=None):
    rng = np.random.default_rng(0)
    per_model = [_scores(rng) for _ in range(n_models)]
    return ProtocolComparison.build("toy", "Toy protocol", "toy score", "higher",
                                    "PrunedGradient", per_model, x=[0.1, 0.2],
                                    x_label="share", curve_name="value",
                                    not_a_result=not_a_result)


def test_comparison_verdicts_cis_and_paragraph():
    c = _comparison()
    assert c.methods["PrunedGradient"].verdict is None and c.methods["PrunedGradient"].paired == []
    assert c.methods["Better"].verdict == "loses"   # higher is better: PG loses to it
    assert c.methods["Random"].verdict == "wins"
    assert c.methods["Same"].verdict == "ties"
    same = c.methods["Same"].paired[0]
    assert same.low <= 0 <= same.high
    better = c.methods["Better"].paired[0]
    assert better.mean == pytest.approx(1.0) and better.low == pytest.approx(1.0)
    score = c.methods["Better"].score
    assert score.low < score.mean < score.high and score.n == 40
    assert len(c.methods["Better"].curve) == 2
    assert c.methods["Better"].tied_share == 0.25
    assert "It wins against Random" in c.summary
    assert "ties with Same" in c.summary and "no winner is called" in c.summary
    assert "It loses to Better" in c.summary and "beats the random control" in c.summary


def test_no_verdict_when_not_a_result():
    c = _comparison(not_a_result="the model is at chance")
    assert {m.verdict for n, m in c.methods.items() if n != "PrunedGradient"} == {"not a result"}
    assert c.summary.startswith("Not a result: the model is at chance")
    assert "wins" not in c.summary


def test_several_models_give_within_and_between_spread():
    c = _comparison(n_models=3)
    assert c.n_models == 3 and len(c.methods["Better"].paired) == 3
    spread = c.methods["Better"].models
    assert spread["score"]["n_models"] == 3 and len(spread["score"]["within"]) == 3
    assert spread["paired"]["mean"] == pytest.approx(1.0)
    assert math.isfinite(spread["score"]["between_std"])
    assert "on every one of the 3 trained models" in c.summary


def test_comparisons_round_trip_through_results_json_and_render(tmp_path):
    results = BenchmarkResults(methods=["PrunedGradient", "Better", "Same", "Random"],
                               config={"preset": "full", "sparsity": 0.8, "device": "cpu",
                                       "seed": 0},
                               comparisons={"toy": _comparison(n_models=2)})
    doc = json.loads(json.dumps(results.to_dict()))
    back = BenchmarkResults.from_dict(doc)
    assert back.comparisons["toy"] == results.comparisons["toy"]
    assert back.to_dict() == doc
    tables = {t["title"]: t for t in report.benchmark_tables(back)}
    table = tables["Verdict: Toy protocol"]
    assert table["text"].startswith("Toy protocol (toy score, higher is better)")
    rows = {row[0]: row for row in table["rows"]}
    assert rows["Same"][table["headers"].index("PrunedGradient's verdict")] == "tie"
    assert rows["Better"][table["headers"].index("PrunedGradient's verdict")] == "PG worse"
    assert rows["Random"][table["headers"].index("PrunedGradient's verdict")] == "PG better"
    assert rows["Better"][table["headers"].index("tied share")] == "25.0%"
    # score "mean [low, high]" and the paired differences, one column per model
    assert rows["Better"][1].count("[") == 1 and rows["Better"][2].startswith("+1")
    assert sum("paired CI]" in h for h in table["headers"]) == 2
    # every method's row names the methods it does not separate from
    close = table["headers"].index("not separated from (paired CI contains 0)")
    assert rows["Same"][close] == "PrunedGradient" and rows["Better"][close] == "--"
    figures = report.write_benchmark_figures(tmp_path, back, None, None, None)
    assert [f.name for f in figures] == ["scores.png"]
    back.figures = ["scores.png"]
    markdown = report.write_benchmark_markdown(tmp_path / "results.md", back).read_text()
    assert "## Verdict: Toy protocol" in markdown and "no winner is called" in markdown


def test_ci_curves_figure_draws_one_band_per_method():
    c = _comparison()
    fig = report.ci_curves_figure({n: (c.x, m.curve) for n, m in c.methods.items()},
                                  "t", "x", "y")
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and len(ax.collections) == 4  # a line and a CI band each


class _Intensity(nn.Module):
    r"""Class = the image's mean intensity (0..3), for any image size: a grid has cells of
    four classes and the model accepts it."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))[:, None]
        return -self.scale * (m - torch.arange(4.0)) ** 2


def test_grid_pointing_section_scores_every_grid():
    torch.manual_seed(0)
    labels = torch.arange(4).repeat(5)
    images = labels[:, None, None, None].float() + 0.01 * torch.randn(20, 1, 8, 8)
    setup = benchmark.Setup(_Intensity(), lambda s: _Intensity(), images, labels, images, labels,
                            None, lambda x: x.numpy(), 0.0)
    preset = benchmark.PRESETS["quick"]
    scores = {}
    why = benchmark.run_grid_pointing(setup, build_methods(["Saliency", "Random"]), preset, 0,
                                      False, scores)
    assert why is None
    values = scores["grid_pointing"]["Random"]["values"]
    assert values.shape == (preset.n_grids,)
    assert np.all((values >= 0) & (values <= 1)) and abs(values.mean() - 0.25) < 0.1


def test_model_seeds_are_checked():
    args = type("A", (), {"model_seeds": "0,x", "weights": None, "data": None})()
    with pytest.raises(CommandError, match="--model-seeds"):
        benchmark._model_seeds(args)
    args.model_seeds = "1,1"
    with pytest.raises(CommandError, match="distinct"):
        benchmark._model_seeds(args)
    args.model_seeds, args.weights = "0,1", "w.pt"
    with pytest.raises(CommandError, match="only the embedded data"):
        benchmark._model_seeds(args)
    args.model_seeds, args.weights = "2, 0", None
    assert benchmark._model_seeds(args) == [2, 0]


@pytest.fixture(scope="module")
def new_sections_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("bench") / "result"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAPTUM_PRUNE_CACHE", str(cache))
        rc = cli.main(["benchmark", "--quick", "--out", str(out), "--model-seeds", "0,1",
                       "--methods", "PrunedGradient,Saliency,Random",
                       "--benchmarks", "road,srg,grid_pointing,emprt,smprt"] + TINY)
    return rc, out


def test_new_sections_run_on_two_models_and_round_trip(new_sections_run):
    rc, out = new_sections_run
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["model_seeds"] == [0, 1]
    assert [m["model_seed"] for m in doc["model"]["models"]] == [0, 1]
    assert set(doc["comparisons"]) == {"road_morf", "road_lerf", "srg", "emprt", "smprt"}
    assert "grid_pointing" in doc["config"]["skipped"]  # no confident images at chance
    for comparison in doc["comparisons"].values():
        assert comparison["n_models"] == 2
        assert set(comparison["methods"]) == {"PrunedGradient", "Saliency", "Random"}
        saliency = comparison["methods"]["Saliency"]
        assert len(saliency["paired"]) == 2 and saliency["models"]["score"]["n_models"] == 2
    # the control's maps ignore the model: its eMPRT entropy does not rise
    assert doc["comparisons"]["emprt"]["methods"]["Random"]["score"]["mean"] == pytest.approx(0)
    assert doc["comparisons"]["smprt"]["x"][0] == "original"
    assert len(doc["comparisons"]["smprt"]["methods"]["Saliency"]["curve"]) == len(
        doc["comparisons"]["smprt"]["x"])
    assert BenchmarkResults.from_dict(doc).to_dict() == doc
    markdown = (out / "results.md").read_text()
    assert "## Verdict: ROAD, MoRF" in markdown and "Not run:" in markdown
    assert "paired CI], model seed 1" in markdown


def test_report_only_rewrites_the_report_from_results_json(new_sections_run):
    _, out = new_sections_run
    (out / "results.md").unlink()
    (out / "road_morf.png").unlink()
    assert cli.main(["benchmark", "--out", str(out), "--report-only"]) == 0
    assert "## Verdict: SRG" in (out / "results.md").read_text()
    assert (out / "road_morf.png").is_file() and (out / "maps.png").is_file()
    doc = json.loads((out / "results.json").read_text())
    assert "maps.png" in doc["figures"] and "road_morf.png" in doc["figures"]


def test_separation_uses_the_paired_ci_of_every_pair():
    c = _comparison()
    assert c.separated("PrunedGradient", "Better") and c.separated("Random", "PrunedGradient")
    assert not c.separated("PrunedGradient", "Same")
    assert c.separated("Better", "Random")
    assert c.all_separated(["PrunedGradient", "Better", "Random"])
    assert not c.all_separated(["PrunedGradient", "Same", "Random"])
    assert c.separated("Better", "Missing") is None
    assert _comparison(not_a_result="at chance").separated("Better", "Random") is None
    # A pair whose per-method CIs overlap but whose per-example difference is consistent: the
    # paired CI separates it, disjoint CIs would not.
    rng = np.random.default_rng(3)
    base = rng.normal(size=60)
    close = ProtocolComparison.build(
        "toy", "Toy", "toy score", "higher", "PrunedGradient",
        [{"PrunedGradient": {"values": base + 5}, "A": {"values": base + 0.1},
          "B": {"values": base}}])
    a, b = close.methods["A"].score, close.methods["B"].score
    assert a.low < b.high  # overlapping CIs
    assert close.separated("A", "B") and close.separated("B", "A")
    assert close.beats("A", "B") and not close.beats("B", "A")
    (ab,) = close.paired("A", "B")
    (ba,) = close.paired("B", "A")
    assert ab.mean == pytest.approx(0.1) and (ba.mean, ba.low, ba.high) == (
        -ab.mean, -ab.high, -ab.low)
    # Two models: separated only when both models' paired CIs exclude 0 on the same side.
    both = ProtocolComparison.build(
        "toy", "Toy", "toy score", "higher", "PrunedGradient",
        [{"PrunedGradient": {"values": base}, "A": {"values": base + 0.1}},
         {"PrunedGradient": {"values": base}, "A": {"values": base - 0.1}}])
    assert both.separated("A", "PrunedGradient") is False
    # The pairs survive the JSON round trip; without them (an older results.json) the
    # reference's verdict and disjoint CIs decide, as before.
    again = ProtocolComparison.from_dict(json.loads(json.dumps(close.to_dict())))
    assert again.pairs == close.pairs and again.separated("A", "B")
    old = json.loads(json.dumps(close.to_dict()))
    del old["pairs"]
    older = ProtocolComparison.from_dict(old)
    assert older.pairs == {} and older.separated("A", "B") is False
    assert older.separated("A", "PrunedGradient")


def test_sweep_and_linearity_sections_and_auto_as_a_method(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTUM_PRUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "result"
    rc = cli.main(["benchmark", "--quick", "--out", str(out), "--methods",
                   "PrunedGradient,PrunedGradient[auto],Random", "--benchmarks",
                   "perturbation,sweep,linearity"] + TINY)
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    sweep = doc["sweep"]
    assert sweep["sparsities"] == [0.0, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, "auto"]
    assert sweep["kept_class_rate"][0] == 1.0 and len(sweep["output_change_ci"]) == 8
    assert 0.0 <= sweep["chosen_sparsity_mean"][-1] < 1.0
    networks = [n["network"] for n in doc["linearity"]["networks"]]
    assert networks[0] == "full network" and len(networks) == 1 + 4
    assert len(doc["linearity"]["networks"][1]["ci"]) == len(doc["linearity"]["radii"])
    assert {"sweep_maps.png", "sweep_curves.png", "linearity.png"} <= set(doc["figures"])
    # "auto" is a method like the others, with its CIs and a verdict against PrunedGradient
    auto = doc["comparisons"]["lerf"]["methods"]["PrunedGradient[auto]"]
    assert len(auto["paired"]) == 1 and auto["verdict"] is not None
    assert BenchmarkResults.from_dict(doc).to_dict() == doc
    markdown = (out / "results.md").read_text()
    assert "## Sparsity sweep" in markdown and "## Local linearity" in markdown
    assert "| auto |" in markdown and "| full network |" in markdown
    # --report-only keeps the figures only the run can draw
    assert cli.main(["benchmark", "--out", str(out), "--report-only"]) == 0
    assert "sweep_maps.png" in json.loads((out / "results.json").read_text())["figures"]


def test_data_scene_runs_on_the_digit_scenes(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTUM_PRUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "result"
    rc = cli.main(["benchmark", "--quick", "--data", "scene", "--out", str(out), "--methods",
                   "PrunedGradient,Random", "--benchmarks", "perturbation,localisation",
                   "--model-epochs", "1", "--threads", "1", "--no-progress", "--n-eval", "6"])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert "scenes" in doc["model"]["data"] and doc["model"]["preset"]["epochs"] == 1
    assert set(doc["comparisons"]) == {"lerf", "morf", "mass_in_box", "pointing_game"}
    assert doc["config"]["data"] == "scene"
