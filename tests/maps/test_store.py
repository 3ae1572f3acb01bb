"""attribute_dataset and MapStore in one process: layout, resumption, refusal, float16, reader."""
import json

import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency

from captum_prune import MapStore, PrunedGradient, attribute_dataset
from tests.maps import _job
from tests.maps._compare import assert_same_store, direct_maps


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    r"""The store of the job, computed in this process without interruption."""
    out = tmp_path_factory.mktemp("reference") / "store"
    _job.run(str(out))
    return out


def test_store_layout_and_reader(reference):
    store = MapStore(reference)
    meta = json.loads((reference / "store.json").read_text())
    assert meta["complete"] is True and meta["format"] == "captum-prune-maps/1"
    assert meta["indices"] == "all" and meta["n"] == _job.N_ITEMS
    assert [s["start"] for s in meta["shards"]] == list(range(0, 45, 8))
    assert meta["method"]["name"] == "PrunedGradient"
    assert meta["arguments"] == {"sparsity": 0.7}
    assert set(meta["versions"]) == {"torch", "captum", "captum_prune"}
    assert meta["model"]["class"] == "torch.nn.modules.container.Sequential"
    assert len(meta["model"]["sha256"]) == 64
    # Shards are plain tensors, readable with weights_only.
    shard = torch.load(reference / "shard-000005.pt", weights_only=True)
    assert shard["indices"].tolist() == list(range(40, 45))
    assert shard["maps"].shape == (5, 3, 12, 12)
    # The maps equal a direct computation with the same batches.
    data, net = _job.dataset(), _job.model()
    expected = direct_maps(PrunedGradient(net), data.tensors[0], _job.BATCH_SIZE, sparsity=0.7)
    assert len(store) == 45 and store.complete and 44 in store and 45 not in store
    assert torch.equal(store.maps(), expected)
    assert torch.equal(store[13], expected[13])
    assert store.targets().tolist() == net(torch.stack([x for x, _ in data])).argmax(1).tolist()
    # A torch Dataset column: DataLoader over the zipped dataset.
    loader = torch.utils.data.DataLoader(store.zip(data), batch_size=10)
    x, y, a = next(iter(loader))
    assert torch.equal(a, expected[:10]) and torch.equal(x, data.tensors[0][:10])
    with pytest.raises(IndexError, match="not in the store"):
        store[45]
    with pytest.raises(TypeError, match="index must be an int"):
        store["3"]


def test_rerun_skips_everything_and_keeps_the_store(reference, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    store = _job.run(str(copy))
    assert store.run_info["computed"] == 0 and store.run_info["skipped"] == 45
    assert_same_store(copy, reference)


def test_resume_after_losing_shards_gives_the_same_store(reference, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    (copy / "shard-000001.pt").unlink()
    (copy / "shard-000005.pt").unlink()
    (copy / ".shard-000001.pt.tmp-12345").write_bytes(b"half a file")  # a killed write
    meta = json.loads((copy / "store.json").read_text())
    (copy / "store.json").write_text(json.dumps(dict(meta, complete=False)))
    assert not MapStore(copy).complete and MapStore(copy).missing_shards() == [1, 5]
    with pytest.raises(FileNotFoundError, match="incomplete"):
        MapStore(copy)[9]
    store = _job.run(str(copy))
    assert store.run_info["computed"] == 13
    assert_same_store(copy, reference)


@pytest.mark.parametrize("change, message", [
    (dict(sparsity=0.5), r"arguments\.sparsity: stored 0\.7, now 0\.5"),
    (dict(method="SmoothGrad"), r"method\.name: stored \"PrunedGradient\", now \"NoiseTunnel\""),
    (dict(net="changed"), r"model\.sha256"),
])
def test_changed_method_argument_or_model_is_refused(reference, tmp_path, change, message):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    (copy / "shard-000002.pt").unlink()
    if change.pop("net", None):
        net = _job.model()
        with torch.no_grad():
            net[0].bias[0] += 1e-3
        change["net"] = net
    with pytest.raises(ValueError, match=message):
        _job.run(str(copy), **change)
    assert MapStore(copy).missing_shards() == [2]  # nothing mixed in


def test_float16_storage_and_label_target_and_subset(tmp_path):
    data, net = _job.dataset(), _job.model()
    store = attribute_dataset(Saliency(net), data, tmp_path / "s", batch_size=5, shard_size=10,
                              target="label", dtype=torch.float16, indices=[40, 3, 7, 21])
    assert store.metadata["dtype"] == "float16" and len(store) == 4
    assert store.indices.tolist() == [40, 3, 7, 21] and 3 in store and 4 not in store
    x = torch.stack([data[i][0] for i in (40, 3, 7, 21)])
    y = torch.stack([data[i][1] for i in (40, 3, 7, 21)])
    expected = Saliency(net).attribute(x, target=y)
    assert store[7].dtype == torch.float16
    assert torch.equal(store.maps([40, 3, 7, 21]), expected.half())
    assert store.target(21) == int(data[21][1])
    assert store.maps([3], dtype=torch.float32).dtype == torch.float32


def test_layer_method_random_method_and_caller_state(tmp_path):
    data, net = _job.dataset(), _job.model()
    gradcam = LayerGradCam(net, net[3])
    store = attribute_dataset(gradcam, data, tmp_path / "cam", batch_size=16, target=2)
    assert store.metadata["method"]["settings"]["layer"] == {"module": "3"}
    assert store[0].shape == (1, 6, 6) and store.targets().unique().tolist() == [2]
    # Random methods reproduce (seeded per batch) and the caller's RNG is left alone.
    state = torch.get_rng_state()
    a = _job.run(str(tmp_path / "a"), method="SmoothGrad")
    _job.run(str(tmp_path / "b"), method="SmoothGrad")
    assert torch.equal(torch.get_rng_state(), state)
    assert_same_store(tmp_path / "a", tmp_path / "b")
    assert not torch.equal(a[0], a[1])
    net.train()
    attribute_dataset(Saliency(net), data, tmp_path / "train", batch_size=45)
    assert net.training and all(not p.requires_grad or p.grad is None for p in net.parameters())


def test_bad_arguments_name_the_argument(tmp_path):
    data, net = _job.dataset(), _job.model()
    method = Saliency(net)
    cases = [
        (dict(batch_size=0), ValueError, "batch_size must be a positive int"),
        (dict(shard_size=2.5), ValueError, "shard_size must be a positive int"),
        (dict(target="top"), ValueError, "target must be 'predicted', 'label'"),
        (dict(target=[1, 2]), ValueError, r"target: a sequence target needs one class per"),
        (dict(indices=[0, 0]), ValueError, "indices must not repeat"),
        (dict(indices=[99]), ValueError, "indices: .99. out of range"),
        (dict(dtype=torch.int8), ValueError, "dtype must be a floating"),
        (dict(attribute_kwargs={"target": 1}), ValueError, "attribute_kwargs must not contain"),
        (dict(seed=-1), ValueError, "seed must be a non-negative int"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            attribute_dataset(method, data, tmp_path / "s", **kwargs)
    with pytest.raises(ValueError, match="model is required"):
        attribute_dataset(lambda x, t: x, data, tmp_path / "s")
    with pytest.raises(TypeError, match="dataset must be a map-style dataset"):
        attribute_dataset(method, iter([]), tmp_path / "s")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="out: .* is not a folder"):
        attribute_dataset(method, data, tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="not a map store"):
        MapStore(tmp_path)
    with pytest.raises(ValueError, match="out: .* is not empty and holds no map store"):
        attribute_dataset(method, data, tmp_path)
    assert not (tmp_path / "s").exists()


def test_plain_callable_with_method_name(tmp_path):
    data, net = _job.dataset(), _job.model()
    ig = IntegratedGradients(net)
    store = attribute_dataset(lambda x, t: ig.attribute(x, target=t, n_steps=4), data,
                              tmp_path / "s", model=net, method_name="IG, 4 steps",
                              batch_size=45)
    assert store.metadata["method"] == {"name": "IG, 4 steps"}
    assert store.maps().shape == (45, 3, 12, 12)
