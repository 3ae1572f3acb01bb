r"""The on-disk map store: sharded attribution maps with the metadata that produced them.

A store is a folder::

    maps/
      store.json          format, indices, shard layout, method, arguments, model, versions
      shard-000000.pt     {"indices": LongTensor, "maps": Tensor, "targets": LongTensor}
      shard-000001.pt
      ...

Shard ``k`` holds the maps of positions ``k * shard_size`` to ``(k + 1) * shard_size`` of the
store's dataset indices. Every file is written to a temporary name in the same folder and
renamed into place (:func:`os.replace`, atomic on POSIX file systems), so a file that exists is
complete; a killed run leaves at most a temporary file, which the next run removes. Shards are
plain tensors: ``torch.load(path, weights_only=True)`` reads them.
"""
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["MapStore", "STORE_FORMAT", "METADATA_FILE"]

STORE_FORMAT = "captum-prune-maps/1"
METADATA_FILE = "store.json"
#: Metadata entries that describe progress, not what the maps are; they may differ on resume.
_PROGRESS_KEYS = ("complete",)
_TMP_MARK = ".tmp-"

PathLike = Union[str, "os.PathLike[str]"]


def shard_name(k: int) -> str:
    return f"shard-{k:06d}.pt"


def shard_layout(n: int, shard_size: int) -> List[Dict[str, Any]]:
    r"""The shards of ``n`` positions: ``[{"file", "start", "stop"}, ...]``."""
    return [
        {"file": shard_name(k), "start": start, "stop": min(start + shard_size, n)}
        for k, start in enumerate(range(0, n, shard_size))
    ]


def atomic_write_bytes(path: Path, write) -> None:
    r"""Calls ``write(file)`` on a temporary file beside ``path``, then renames it to ``path``."""
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_metadata(folder: Path, metadata: Dict[str, Any]) -> None:
    text = json.dumps(metadata, indent=1, sort_keys=True) + "\n"
    atomic_write_bytes(folder / METADATA_FILE, lambda f: f.write(text.encode()))


def read_metadata(folder: Path) -> Dict[str, Any]:
    path = folder / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} is not a map store: it has no {METADATA_FILE}") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not readable map-store metadata ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != STORE_FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise ValueError(f"{path}: expected format {STORE_FORMAT!r}, found {found!r}")
    return metadata


def write_shard(folder: Path, k: int, indices: Tensor, maps: Tensor, targets: Tensor) -> None:
    content = {"indices": indices.clone(), "maps": maps.contiguous(), "targets": targets.clone()}
    atomic_write_bytes(folder / shard_name(k), lambda f: torch.save(content, f))


def remove_temporary_files(folder: Path) -> None:
    r"""Removes what killed runs left half-written (``.NAME.tmp-PID``)."""
    for path in folder.glob(f".*{_TMP_MARK}*"):
        path.unlink(missing_ok=True)


def differences(stored: Dict[str, Any], wanted: Dict[str, Any], prefix: str = "") -> List[str]:
    r"""The dotted keys where two metadata dicts differ (progress entries ignored)."""
    out = []
    for key in sorted(set(stored) | set(wanted)):
        if not prefix and key in _PROGRESS_KEYS:
            continue
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def describe_change(stored: Dict[str, Any], wanted: Dict[str, Any], keys: List[str]) -> str:
    def short(value: Any) -> str:
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 80 else text[:77] + "..."

    def get(d: Dict[str, Any], dotted: str) -> Any:
        for part in dotted.split("."):
            d = d.get(part) if isinstance(d, dict) else None
        return d

    parts = [f"{k}: stored {short(get(stored, k))}, now {short(get(wanted, k))}" for k in keys[:4]]
    more = f" (and {len(keys) - 4} more)" if len(keys) > 4 else ""
    return "; ".join(parts) + more


def tensor_digest(tensor: Tensor) -> str:
    r"""SHA-256 of a tensor's dtype, shape and bytes (on the CPU)."""
    t = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class MapStore(Dataset):
    r"""
    Reads a map store written by :func:`~captum_prune.attribute_dataset`, by dataset index.

    Shards are loaded lazily (memory-mapped) and the most recently used ``cache_shards`` are
    kept, so memory stays bounded however large the store. A ``MapStore`` is a
    :class:`torch.utils.data.Dataset` keyed by *dataset index*: ``store[i]`` is the map of
    ``dataset[i]``; when the store covers the whole dataset, ``len(store) == len(dataset)``
    and it can stand beside the dataset as a column (see :meth:`zip`).

    Args:

        path (str or PathLike): The store's folder.
        cache_shards (int, optional): Shards kept open at a time. Default: 4

    Attributes:
        path (Path): The folder.
        metadata (dict): The contents of ``store.json``: ``indices``, ``shard_size``,
                    ``batch_size``, ``method``, ``arguments``, ``model``, ``target``,
                    ``dtype``, ``versions``, ``seed``, ``complete``.
        indices (Tensor): The dataset indices the store covers, in store order.
        run_info (dict or None): Set by :func:`~captum_prune.attribute_dataset` on the store
                    it returns: ``computed`` and ``skipped`` maps, ``seconds``,
                    ``images_per_second`` and ``world_size`` of that run.

    Examples::

        >>> import torch, tempfile
        >>> from captum.attr import Saliency
        >>> from captum_prune import MapStore, attribute_dataset
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> data = torch.utils.data.TensorDataset(torch.randn(10, 3, 2, 2), torch.zeros(10))
        >>> out = tempfile.mkdtemp()
        >>> _ = attribute_dataset(Saliency(model), data, out, batch_size=4, shard_size=4)
        >>> store = MapStore(out)
        >>> len(store), store.complete, store[7].shape
        (10, True, torch.Size([3, 2, 2]))
        >>> store.maps([0, 9]).shape
        torch.Size([2, 3, 2, 2])
        >>> image, label, attribution = store.zip(data)[3]
    """

    def __init__(self, path: PathLike, cache_shards: int = 4) -> None:
        if isinstance(cache_shards, bool) or not isinstance(cache_shards, int) or cache_shards < 1:
            raise ValueError(f"cache_shards must be a positive int, got {cache_shards!r}")
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"path: {self.path} is not a folder")
        self.metadata = read_metadata(self.path)
        self.shard_size = int(self.metadata["shard_size"])
        indices = self.metadata["indices"]
        n = int(self.metadata["n"])
        if indices == "all":
            self.indices = torch.arange(n)
            self._position: Optional[Dict[int, int]] = None
        else:
            self.indices = torch.as_tensor(indices, dtype=torch.long)
            self._position = {int(i): p for p, i in enumerate(indices)}
        self._cache_size = cache_shards
        self._cache: "OrderedDict[int, Dict[str, Tensor]]" = OrderedDict()
        self.run_info: Optional[Dict[str, Any]] = None

    # ---------------------------------------------------------------- layout

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shards(self) -> List[Dict[str, Any]]:
        r"""The shard layout: ``[{"file", "start", "stop"}, ...]`` over store positions."""
        return self.metadata["shards"]

    def missing_shards(self) -> List[int]:
        r"""Numbers of the shards not written yet."""
        return [k for k, s in enumerate(self.shards) if not (self.path / s["file"]).is_file()]

    @property
    def complete(self) -> bool:
        r"""Whether every shard has been written."""
        return not self.missing_shards()

    def __contains__(self, index: object) -> bool:
        try:
            self._locate(index)  # type: ignore[arg-type]
        except (KeyError, IndexError, TypeError):
            return False
        return True

    def _locate(self, index: int) -> int:
        if isinstance(index, Tensor):
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int dataset index, got {type(index).__name__}")
        if self._position is None:
            if not 0 <= index < len(self.indices):
                raise IndexError(f"dataset index {index} is not in the store (0..{len(self) - 1})")
            return index
        try:
            return self._position[index]
        except KeyError:
            raise KeyError(f"dataset index {index} is not in the store") from None

    def _shard(self, k: int) -> Dict[str, Tensor]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        path = self.path / self.shards[k]["file"]
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the store is incomplete ({len(self.missing_shards())} of "
                f"{len(self.shards)} shards missing); rerun attribute_dataset to complete it"
            )
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        self._cache[k] = content
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return content

    # ---------------------------------------------------------------- access

    def __getitem__(self, index: int) -> Tensor:
        r"""The map of dataset index ``index`` (a tensor of the stored dtype)."""
        p = self._locate(index)
        return self._shard(p // self.shard_size)["maps"][p % self.shard_size].clone()

    def target(self, index: int) -> int:
        r"""The target class the map of dataset index ``index`` was computed for."""
        p = self._locate(index)
        return int(self._shard(p // self.shard_size)["targets"][p % self.shard_size])

    def _gather(self, indices: Optional[Iterable[int]], key: str) -> Tensor:
        if indices is None:
            indices = self.indices
        positions = [self._locate(i) for i in (indices.tolist() if isinstance(indices, Tensor)
                                               else indices)]
        if not positions:
            raise ValueError("indices must not be empty")
        rows = []
        for p in positions:
            rows.append(self._shard(p // self.shard_size)[key][p % self.shard_size])
        return torch.stack(rows)

    def maps(self, indices: Optional[Iterable[int]] = None, dtype: Optional[torch.dtype] = None
             ) -> Tensor:
        r"""
        The maps of ``indices`` (dataset indices; default: all, which loads the whole store),
        stacked, optionally converted to ``dtype``.
        """
        out = self._gather(indices, "maps")
        return out if dtype is None else out.to(dtype)

    def targets(self, indices: Optional[Iterable[int]] = None) -> Tensor:
        r"""The target classes of ``indices`` (default: all) as a LongTensor."""
        return self._gather(indices, "targets")

    def zip(self, dataset: Any) -> "Dataset":
        r"""
        A dataset whose item ``i`` is ``dataset[i]`` followed by ``self[i]``: ``(image, label,
        map)`` for an ``(image, label)`` dataset. Indices not in the store raise.
        """
        return _Zipped(dataset, self)

    def __repr__(self) -> str:
        m = self.metadata
        return (f"MapStore({str(self.path)!r}: {len(self)} maps of {m['method']['name']}, "
                f"{len(self.shards) - len(self.missing_shards())}/{len(self.shards)} shards)")


class _Zipped(Dataset):
    def __init__(self, dataset: Any, store: MapStore) -> None:
        self.dataset, self.store = dataset, store

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        items = tuple(item) if isinstance(item, (tuple, list)) else (item,)
        return items + (self.store[index],)


def resolve_maps(value: Any, n: int, indices: Optional[Sequence[int]], name: str,
                 indices_name: str) -> Any:
    r"""
    For the evaluation protocols: a :class:`MapStore` becomes the float tensor of the maps of
    ``indices`` (default ``0 .. n - 1``); anything else is returned unchanged.
    """
    if not isinstance(value, MapStore):
        if indices is not None:
            raise ValueError(f"{indices_name} is only used when {name} is a MapStore")
        return value
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(idx) != n:
        raise ValueError(f"{indices_name}: {len(idx)} dataset indices given for {n} images")
    try:
        maps = value.maps(idx)
    except (KeyError, IndexError) as error:
        raise ValueError(f"{name}: {error.args[0]}") from None
    return maps.float() if maps.dtype in (torch.float16, torch.bfloat16) else maps
