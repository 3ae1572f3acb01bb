"""Store comparison and direct maps for the tests."""
import json
from pathlib import Path

import torch


def assert_same_store(a, b):
    r"""The same files, the same metadata, and shards equal bit for bit."""
    a, b = Path(a), Path(b)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert json.loads((a / "store.json").read_text()) == json.loads((b / "store.json").read_text())
    for name in names:
        if name.endswith(".pt"):
            x = torch.load(a / name, weights_only=True)
            y = torch.load(b / name, weights_only=True)
            assert sorted(x) == sorted(y) == ["indices", "maps", "targets"]
            for key in x:
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), (name, key)


def direct_maps(method, images, batch_size, **kwargs):
    r"""The maps of ``images`` for the predicted class, in batches of ``batch_size``, in memory."""
    maps = []
    for s in range(0, len(images), batch_size):
        x = images[s:s + batch_size]
        with torch.no_grad():
            t = method.forward_func(x).argmax(1)
        maps.append(method.attribute(x, target=t, **kwargs).detach())
    return torch.cat(maps)
