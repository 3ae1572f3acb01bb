r""":func:`attribute_dataset`: the maps of every image of a dataset, written to a map store."""
import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from captum_prune.maps.distributed import Group, process_group, split
from captum_prune.maps.store import (
    METADATA_FILE,
    STORE_FORMAT,
    MapStore,
    PathLike,
    describe_change,
    differences,
    read_metadata,
    remove_temporary_files,
    shard_layout,
    tensor_digest,
    write_metadata,
    write_shard,
)

__all__ = ["attribute_dataset", "model_fingerprint"]

TargetSpec = Union[str, int, Sequence[int], Tensor]
DEFAULT_SHARD_SIZE = 256
_SETTINGS_SKIP = ("forward_func", "gradient_func")
#: Test hook: the process SIGKILLs itself after writing this many shards, as a crash would.
_KILL_AFTER_ENV = "_CAPTUM_PRUNE_TEST_KILL_AFTER_SHARDS"


# ------------------------------------------------------------------ fingerprints


def model_fingerprint(model: Any) -> Dict[str, Any]:
    r"""
    What identifies a model's maps: its class, a SHA-256 of every ``state_dict`` tensor and
    buffer (names, dtypes, shapes and values) and whether it is in training mode. A plain
    function is identified by its qualified name only.
    """
    cls = type(model)
    if not isinstance(model, nn.Module):
        name = getattr(model, "__qualname__", cls.__qualname__)
        return {"class": f"{getattr(model, '__module__', cls.__module__)}.{name}", "sha256": None}
    h = hashlib.sha256()
    tensors = dict(model.state_dict(keep_vars=False))
    for name, buffer in model.named_buffers():
        tensors.setdefault(name, buffer)  # non-persistent buffers too
    for name in sorted(tensors):
        if isinstance(tensors[name], Tensor):
            h.update(name.encode())
            h.update(tensor_digest(tensors[name]).encode())
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "sha256": h.hexdigest(),
            "training": bool(model.training)}


def _describe(value: Any, model: Any = None) -> Any:
    r"""A JSON description of an argument that is equal exactly when the argument is."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, Tensor):
        return {"tensor": list(value.shape), "dtype": str(value.dtype),
                "sha256": tensor_digest(value)}
    if isinstance(value, (list, tuple)):
        return [_describe(v, model) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v, model) for k, v in sorted(value.items(), key=str)}
    if isinstance(value, nn.Module):
        if isinstance(model, nn.Module):
            for name, module in model.named_modules():
                if module is value:
                    return {"module": name or "<model>"}
        return {"module": model_fingerprint(value)}
    if hasattr(value, "attribute"):
        return _describe_method(value, None, model)
    if callable(value):
        return {"callable": f"{getattr(value, '__module__', '?')}."
                            f"{getattr(value, '__qualname__', type(value).__qualname__)}"}
    return {"object": f"{type(value).__module__}.{type(value).__qualname__}"}


def _describe_method(method: Any, method_name: Optional[str], model: Any) -> Dict[str, Any]:
    if method_name is not None:
        return {"name": method_name}
    if hasattr(method, "attribute"):
        settings = {}
        for key, value in sorted(vars(method).items()):
            if key in _SETTINGS_SKIP or key.startswith("__"):
                continue
            if isinstance(value, (bool, int, float, str, type(None), list, tuple, nn.Module)) \
                    or hasattr(value, "attribute"):
                settings[key] = _describe(value, model)
        return {"name": type(method).__name__, "settings": settings}
    return {"name": _describe(method)["callable"]}


def _versions() -> Dict[str, str]:
    import captum

    import captum_prune

    return {"torch": torch.__version__, "captum": captum.__version__,
            "captum_prune": captum_prune.__version__}


# ------------------------------------------------------------------ argument checks


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_indices(indices: Any, n: int) -> Tuple[List[int], bool]:
    if indices is None:
        return list(range(n)), True
    if isinstance(indices, Tensor):
        if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.dim() != 1:
            raise ValueError("indices must be a 1-D integer tensor or a sequence of ints")
        values = indices.tolist()
    else:
        try:
            values = list(indices)
        except TypeError:
            raise ValueError(
                f"indices must be a sequence of ints, got {type(indices).__name__}"
            ) from None
    if not values:
        raise ValueError("indices must not be empty")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in values):
        raise ValueError("indices must hold ints (dataset indices)")
    bad = [i for i in values if not 0 <= i < n]
    if bad:
        raise ValueError(f"indices: {bad[:5]} out of range for a dataset of {n} items")
    if len(set(values)) != len(values):
        raise ValueError("indices must not repeat")
    return values, values == list(range(n))


def _check_target(target: Any, n: int) -> Tuple[Any, Any]:
    r"""Returns ``(target for the loop, its description for the metadata)``."""
    if isinstance(target, str):
        if target not in ("predicted", "label"):
            raise ValueError(f"target must be 'predicted', 'label', an int or one class per "
                             f"dataset item, got {target!r}")
        return target, target
    if isinstance(target, bool):
        raise ValueError(
            f"target must be 'predicted', 'label', an int or a sequence, got {target!r}"
        )
    if isinstance(target, int):
        return target, target
    try:
        table = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"target must be 'predicted', 'label', an int or one class per dataset "
                         f"item, got {type(target).__name__}") from None
    if table.dtype.is_floating_point or table.dtype == torch.bool or table.dim() != 1:
        raise ValueError("target: a sequence target must be 1-D integer class indices")
    if len(table) != n:
        raise ValueError(f"target: a sequence target needs one class per dataset item ({n}), "
                         f"got {len(table)}")
    table = table.long().cpu()
    return table, {"per_item_sha256": tensor_digest(table)}


def _model_device(model: Any) -> torch.device:
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.device
        for tensor in model.buffers():
            return tensor.device
    return torch.device("cpu")


# ------------------------------------------------------------------ the loop


def _split_batch(batch: Any) -> Tuple[Tensor, Optional[Any]]:
    if isinstance(batch, (tuple, list)):
        if not batch or not isinstance(batch[0], Tensor):
            raise TypeError("dataset items must be a Tensor or a tuple (Tensor, label, ...)")
        return batch[0], (batch[1] if len(batch) > 1 else None)
    if not isinstance(batch, Tensor):
        raise TypeError(f"dataset items must be a Tensor or a tuple (Tensor, label, ...), got "
                        f"{type(batch).__name__}")
    return batch, None


def _targets(spec: Any, model: Any, x: Tensor, labels: Any, idx: List[int]) -> Tensor:
    if isinstance(spec, str) and spec == "predicted":
        with torch.no_grad():
            return model(x).argmax(dim=1)
    if isinstance(spec, str):  # "label"
        if labels is None:
            raise ValueError("target='label' needs dataset items (input, label, ...)")
        labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or labels.dim() != 1:
            raise ValueError("target='label': the labels must be integer class indices")
        return labels.long().to(x.device)
    if isinstance(spec, int):
        return torch.full((len(x),), spec, dtype=torch.long, device=x.device)
    return spec[torch.as_tensor(idx)].to(x.device)


def _batches(dataset: Any, batches: List[List[int]], num_workers: int) -> Iterator[Any]:
    if num_workers == 0:
        from torch.utils.data import default_collate

        for idx in batches:
            yield default_collate([dataset[i] for i in idx])
        return
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)
    yield from loader


def attribute_dataset(
    method: Any,
    dataset: Any,
    out: PathLike,
    *,
    batch_size: int = 32,
    shard_size: Optional[int] = None,
    target: TargetSpec = "predicted",
    attribute_kwargs: Optional[Dict[str, Any]] = None,
    indices: Optional[Sequence[int]] = None,
    dtype: Optional[torch.dtype] = None,
    model: Optional[Callable[[Tensor], Tensor]] = None,
    method_name: Optional[str] = None,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = False,
) -> MapStore:
    r"""
    Computes the attribution map of every item of a map-style dataset and writes them to a
    map store (:class:`MapStore`): sharded, resumable and, under ``torchrun``, shared
    between processes.

    The dataset's positions (``indices``, default all) are cut into fixed shards of
    ``shard_size`` positions, and each shard into fixed batches of ``batch_size``. Each shard
    is computed by one process and written atomically; a rerun skips the shards that exist,
    so a killed run resumes where it stopped. Under a launcher that sets ``RANK`` and
    ``WORLD_SIZE`` (``torchrun``), every process takes a disjoint share of the missing shards
    (no duplicates) and joins a process group (``gloo`` on the CPU, ``nccl`` on CUDA); the
    call returns on every rank once the store is complete. Because the batches are the same
    whoever computes them, the store is bit for bit the same whatever the number of
    processes or restarts, for the same torch version, device and thread count per process.

    Random methods (``NoiseTunnel``, random baselines) are seeded per batch from ``seed`` and
    the batch's position, so they reproduce too; the caller's RNG state is restored.

    Args:

        method: A Captum attribution method bound to a model (``Saliency(model)``,
                    :class:`~captum_prune.PrunedGradient`, ``LayerGradCam(model, layer)``,
                    ...), or a callable ``f(inputs, target, **attribute_kwargs)``.
        dataset: A map-style dataset (``__len__`` and ``__getitem__``) whose items are a
                    tensor or a tuple ``(tensor, label, ...)``.
        out (str or PathLike): The store's folder; created if missing. An existing store
                    is resumed if it was made with the same method, arguments, model,
                    data layout and versions, and refused with a ``ValueError`` naming the
                    difference otherwise.
        batch_size (int, optional): Inputs per ``attribute`` call. Default: 32
        shard_size (int, optional): Maps per shard file, the unit of resumption and of the
                    split between processes. Default: the multiple of ``batch_size``
                    nearest 256 (at least ``batch_size``)
        target (str, int or sequence, optional): ``"predicted"``: the model's arg-max class,
                    computed per batch without gradients; ``"label"``: the second element
                    of each dataset item; an int: that class for every item; or one class
                    per dataset item (indexed by dataset index). Default: ``"predicted"``
        attribute_kwargs (dict, optional): Further arguments of ``method.attribute``
                    (``sparsity``, ``baselines``, ``n_steps``, ...), recorded in the store.
        indices (sequence of int, optional): The dataset indices to attribute, in store
                    order. Default: all
        dtype (torch.dtype, optional): Storage dtype, e.g. ``torch.float16`` for half the
                    disk space. Default: the method's output dtype
        model (callable, optional): The model, for the ``"predicted"`` target, the device
                    and the fingerprint. Default: ``method.forward_func`` (required for a
                    plain callable ``method``)
        method_name (str, optional): Names the method in the store instead of its class
                    and settings (for a plain callable, put everything that changes its maps
                    into the name or into ``attribute_kwargs``).
        seed (int, optional): Seed of random methods. Default: 0
        num_workers (int, optional): ``DataLoader`` worker processes that load items.
                    Default: 0 (load in this process)
        progress (bool, optional): Show a tqdm progress bar (on rank 0). Default: False

    Returns:
        The :class:`MapStore` of ``out``; its ``run_info`` says how many maps this call
        computed and skipped, in how many seconds, and the images per second of all
        processes together.

    Examples::

        >>> import torch, tempfile
        >>> from captum.attr import IntegratedGradients
        >>> from captum_prune import attribute_dataset
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> data = torch.utils.data.TensorDataset(torch.randn(10, 3, 2, 2), torch.arange(10) % 3)
        >>> out = tempfile.mkdtemp()
        >>> store = attribute_dataset(IntegratedGradients(model), data, out, batch_size=4,
        ...                           target="label", attribute_kwargs={"n_steps": 8},
        ...                           dtype=torch.float16)
        >>> store.run_info["computed"], store[3].dtype, store.target(3)
        (10, torch.float16, 0)
        >>> attribute_dataset(IntegratedGradients(model), data, out, batch_size=4,
        ...                   target="label").run_info["skipped"]  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ... was made with different settings (arguments.n_steps: stored 8, now null...
    """
    # ---- arguments
    if not (hasattr(method, "attribute") or callable(method)):
        raise TypeError("method must be a Captum attribution method or a callable "
                        f"f(inputs, target), got {type(method).__name__}")
    if model is None:
        model = getattr(method, "forward_func", None)
        if model is None:
            raise ValueError("model is required when method is a plain callable")
    elif not callable(model):
        raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must be a map-style dataset (__len__ and __getitem__), got "
                        f"{type(dataset).__name__}")
    n_items = len(dataset)
    if n_items == 0:
        raise ValueError("dataset is empty")
    batch_size = _positive_int(batch_size, "batch_size")
    if shard_size is None:
        shard_size = batch_size * max(1, round(DEFAULT_SHARD_SIZE / batch_size))
    shard_size = _positive_int(shard_size, "shard_size")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    if attribute_kwargs is not None and not isinstance(attribute_kwargs, dict):
        raise TypeError(f"attribute_kwargs must be a dict, got {type(attribute_kwargs).__name__}")
    attribute_kwargs = dict(attribute_kwargs or {})
    if "target" in attribute_kwargs:
        raise ValueError("attribute_kwargs must not contain 'target'; use the target argument")
    positions, everything = _check_indices(indices, n_items)
    target_spec, target_description = _check_target(target, n_items)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a folder")

    wanted = {
        "format": STORE_FORMAT,
        "n": len(positions),
        "dataset_length": n_items,
        "indices": "all" if everything else positions,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "shards": shard_layout(len(positions), shard_size),
        "target": target_description,
        "dtype": None if dtype is None else str(dtype).replace("torch.", ""),
        "seed": seed,
        "method": _describe_method(method, method_name, model),
        "arguments": _describe(attribute_kwargs, model),
        "model": model_fingerprint(model),
        "versions": _versions(),
        "complete": False,
    }
    device = _model_device(model)
    with process_group(device) as group:
        return _run(group, method, dataset, out, wanted, positions, target_spec,
                    attribute_kwargs, model, dtype, device, seed, num_workers, progress)


def _prepare(group: Group, out: Path, wanted: Dict[str, Any]) -> None:
    r"""Rank 0 creates or checks the metadata; every rank then checks it (collectively)."""
    error = None
    if group.rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
            remove_temporary_files(out)
            if (out / METADATA_FILE).exists():
                _check_same(out, wanted)
            elif any(out.iterdir()):
                raise ValueError(f"out: {out} is not empty and holds no map store (no "
                                 f"{METADATA_FILE}); use a new or empty folder")
            else:
                write_metadata(out, wanted)
        except (ValueError, OSError) as caught:
            error = caught
    if not group.all_ok(error is None):
        if error is not None:
            raise error
        raise ValueError(f"out: rank 0 refused the map store {out} (see its message)")
    error = None
    if group.rank != 0:  # e.g. a model initialised differently on this rank
        try:
            _check_same(out, wanted)
        except ValueError as caught:
            error = caught
    if not group.all_ok(error is None):
        if error is not None:
            raise ValueError(f"rank {group.rank}: {error}")
        raise ValueError(f"out: another rank's settings differ from the map store {out} "
                         "(see its message); every rank must use the same model and arguments")


def _check_same(out: Path, wanted: Dict[str, Any]) -> None:
    stored = read_metadata(out)
    changed = differences(stored, wanted)
    if changed:
        raise ValueError(
            f"out: the map store {out} was made with different settings "
            f"({describe_change(stored, wanted, changed)}); use another folder, or delete it to "
            "start over"
        )


def _run(group: Group, method: Any, dataset: Any, out: Path, wanted: Dict[str, Any],
         positions: List[int], target_spec: Any, attribute_kwargs: Dict[str, Any], model: Any,
         dtype: Optional[torch.dtype], device: torch.device, seed: int, num_workers: int,
         progress: bool) -> MapStore:
    from captum_prune.evaluation._explain import attribute

    _prepare(group, out, wanted)
    layout = wanted["shards"]
    pending = [k for k, s in enumerate(layout) if not (out / s["file"]).is_file()]
    group.barrier()  # every rank has listed the missing shards before any is written
    mine = split(pending, group.rank, group.world_size)
    sizes = {k: layout[k]["stop"] - layout[k]["start"] for k in pending}
    batches, owner = [], []
    for k in mine:
        start, stop = layout[k]["start"], layout[k]["stop"]
        for s in range(start, stop, wanted["batch_size"]):
            batches.append((s, positions[s:min(s + wanted["batch_size"], stop)]))
            owner.append(k)
    kill_after = int(os.environ.get(_KILL_AFTER_ENV, "0") or 0)

    bar = None
    if progress and group.rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(sizes[k] for k in mine), desc="attributing", unit="img",
                   leave=False)
    cuda = [device] if device.type == "cuda" else []
    started = time.perf_counter()
    parts: List[Tuple[Tensor, Tensor, Tensor]] = []
    written = 0
    loader = _batches(dataset, [idx for _, idx in batches], num_workers)
    for b, (batch, (first, idx)) in enumerate(zip(loader, batches)):
        x, labels = _split_batch(batch)
        x = x.to(device)
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed((seed * 1_000_003 + first) % (2 ** 63))
            t = _targets(target_spec, model, x, labels, idx)
            maps = attribute(method, x, t, **attribute_kwargs)
        maps = maps.detach().to("cpu", dtype=dtype or maps.dtype)
        parts.append((torch.as_tensor(idx, dtype=torch.long), maps, t.detach().cpu().long()))
        if bar is not None:
            bar.update(len(idx))
        if b + 1 == len(batches) or owner[b + 1] != owner[b]:
            shapes = {tuple(m.shape[1:]) for _, m, _ in parts}
            if len(shapes) > 1:
                raise ValueError(f"method returned maps of different shapes {sorted(shapes)}; "
                                 "dataset items must all have the same shape")
            write_shard(out, owner[b], torch.cat([p[0] for p in parts]),
                        torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]))
            parts = []
            written += 1
            if kill_after and written >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    if bar is not None:
        bar.close()
    group.barrier()  # every rank has written its shards
    seconds = time.perf_counter() - started
    store = MapStore(out)
    if group.rank == 0:
        missing = store.missing_shards()
        if missing:  # pragma: no cover - only if files vanish under us
            raise RuntimeError(f"{len(missing)} shards of {out} are missing after the run")
        write_metadata(out, dict(wanted, complete=True))
    group.barrier()
    store = MapStore(out)
    computed = sum(sizes.values())
    store.run_info = {
        "computed": computed,
        "skipped": len(positions) - computed,
        "seconds": seconds,
        "images_per_second": computed / seconds if computed and seconds > 0 else None,
        "world_size": group.world_size,
    }
    return store
