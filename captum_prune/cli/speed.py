r"""``captum-prune speed``: time and memory of PrunedGradient against Captum's gradient methods.

The models are torchvision's ``resnet18``, ``resnet50`` and ``vgg16`` with random weights,
``resnet8``, the paper's :class:`~captum_prune.zoo.models.CifarResNet8` (32x32 inputs, random
weights), and ``digits``, the embedded :class:`~captum_prune.zoo.models.DigitsResNet` (32x32
inputs) with the cached default weights when the cache holds them, else random ones (it is
never trained here).

Every method runs in one process on the same model and input; the repetitions alternate
between methods (round robin), so slow drifts of the machine affect all methods alike, and the
median of each method is reported with its spread (fastest and slowest call, interquartile
range) and its ratio to ``Saliency`` measured in the same run. The command warns when the
timings cannot be trusted: a load average at the start that leaves torch's threads no idle
core, rows whose interquartile range exceeds :data:`NOISY_IQR` of the median, or ratios an idle
machine cannot give.
Calls are timed with :func:`torch.utils.benchmark.timer` (which waits for queued accelerator
work) and summarised by :class:`torch.utils.benchmark.Measurement` (median, interquartile
range). ``Timer.timeit`` and ``blocked_autorange`` are not used for the calls themselves: they
add warm-up calls and loops of their own and set the thread count per measurement, which the
one-call-per-method round robin cannot have.
The process's CPU seconds per call are reported too: on a machine that other programs keep
busy they vary far less than the wall clock (best with ``--threads 1``, as idle-spinning
thread pools count as CPU time).

Memory is the *peak extra* memory of one call over what was in use just before it:

- on CUDA, ``torch.cuda.max_memory_allocated()`` minus ``torch.cuda.memory_allocated()`` before
  the call;
- on CPU, the peak resident set size (sampled every millisecond by a background thread from
  ``/proc/self/statm``) minus the resident size before the call, after glibc's ``malloc_trim``
  has handed memory freed by earlier calls back to the system (otherwise a call could reuse it
  without the resident size growing).

With ``--profile``, one more call of each PrunedGradient method runs under ``torch.profiler``
(CPU only), and the time of each of its steps (``PrunedGradient.score``, ``.select`` and
``.pruned_pass``, see :data:`captum_prune.pruned_gradient.PHASES`) is reported in multiples
of the Saliency median: where the time goes, reproducibly.

The memory of a method is taken on its warm-up call, which is not timed, so the sampling thread
and the page faults after the trim never slow down a timed call; the first method is called once
more before that, so that one-time costs (thread pools, kernel caches) are counted for none.
"""
import argparse
import contextlib
import ctypes
import ctypes.util
import json
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils import benchmark

from captum_prune import _cpu
from captum_prune._shared import atomic_write
from captum_prune.cli._common import check_output_file, quiet_captum, torch_threads
from captum_prune.cli.errors import CommandError

#: torchvision architectures (random weights), the paper's CIFAR ResNet-8 (random weights) and
#: the embedded digits model.
MODELS = ("resnet18", "resnet50", "vgg16", "resnet8", "digits")
#: Input side and classes of the small models (the torchvision ones: --size, 1000 classes).
_SMALL_MODELS = {"resnet8": (32, 10), "digits": (32, 10)}
DEVICES = ("cpu", "cuda", "all")
CRITERIA = ("taylor", "integrated_gradients")
#: Methods in the order they are run and printed; Saliency is the reference of every ratio.
BASELINE = "Saliency"
IG_STEPS = 50
#: Default ``internal_batch_size`` of the IntegratedGradients-type methods: rows of one
#: forward-backward pass. Captum's default (all ``n_steps x batch`` rows at once: 400 at batch
#: 8) needs about 35 GB for ResNet-50 at 224 px; 16 rows need about 1.5 GB and time the same.
IG_INTERNAL_BATCH = 16
#: A row is marked noisy when its interquartile range exceeds this share of its median.
NOISY_IQR = 0.2


@dataclass
class Measurement:
    r"""One method on one model, batch size and device."""

    model: str
    device: str
    batch_size: int
    method: str
    repeats: int
    median_s: float
    per_example_s: float
    times_s: List[float]
    peak_extra_bytes: Optional[int]
    #: Interquartile range of the wall-clock times.
    iqr_s: Optional[float] = None
    #: Fastest and slowest timed call.
    min_s: Optional[float] = None
    max_s: Optional[float] = None
    #: Median CPU seconds of the process per call (all threads): less disturbed than the wall
    #: clock by other programs on a busy machine, but it counts idle-spinning thread pools.
    median_cpu_s: Optional[float] = None
    time_ratio: Optional[float] = None
    cpu_ratio: Optional[float] = None
    memory_ratio: Optional[float] = None
    note: str = ""
    #: Seconds of each step of one profiled call (PrunedGradient rows with ``--profile``).
    phases_s: Optional[Dict[str, float]] = None
    #: The same in multiples of the Saliency median.
    phase_ratios: Optional[Dict[str, float]] = None


# ------------------------------------------------------------------ measuring one callable


def time_call(fn: Callable[[], Any], device: str = "cpu") -> float:
    r"""Wall-clock seconds of one call of ``fn``, waiting for queued accelerator work on both
    ends (:func:`torch.utils.benchmark.timer`). ``device`` is kept for the callers' symmetry
    with :func:`peak_memory_call`."""
    start = benchmark.timer()
    fn()
    return benchmark.timer() - start


def summarise(times: Sequence[float], name: str, threads: int) -> benchmark.Measurement:
    r"""``times`` (seconds of single calls) as a :class:`torch.utils.benchmark.Measurement`,
    for its ``median`` and ``iqr``."""
    task = benchmark.TaskSpec(stmt=name, setup="", num_threads=threads)
    return benchmark.Measurement(number_per_run=1, raw_times=list(times), task_spec=task)


def _resident_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_freed_memory() -> None:
    """Hands memory that glibc keeps after ``free`` back to the system (no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


class _PeakSampler(threading.Thread):
    """Reads the resident size every ``interval`` seconds until stopped; keeps the maximum."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = _resident_bytes() or 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _resident_bytes() or 0)
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, _resident_bytes() or 0)


def peak_memory_call(
    fn: Callable[[], Any], device: str = "cpu", interval: float = 0.001
) -> Tuple[float, Optional[int]]:
    r"""Runs ``fn`` once; returns its seconds and its peak extra memory in bytes.

    Args:

        fn (Callable): The call to measure, without arguments.
        device (str): ``"cpu"`` (peak resident set size over the size just before the call,
                    sampled every ``interval`` seconds) or a CUDA device (peak allocated CUDA
                    memory over the memory allocated just before the call).
        interval (float): Sampling period on CPU, in seconds.

    Returns:
        (seconds, bytes): bytes is None where the resident size cannot be read (no
        ``/proc/self/statm``). The seconds include the sampling overhead; use
        :func:`time_call` for timings.
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        seconds = time_call(fn, device)
        return seconds, torch.cuda.max_memory_allocated(device) - before
    _release_freed_memory()
    before = _resident_bytes()
    if before is None:
        return time_call(fn, device), None
    sampler = _PeakSampler(interval)
    sampler.start()
    try:
        seconds = time_call(fn, device)
    finally:
        peak = sampler.stop()
    return seconds, max(0, peak - before)


@dataclass
class _Method:
    name: str
    fn: Callable[[], Any]
    repeats: int
    note: str = ""
    times: List[float] = field(default_factory=list)
    cpu_times: List[float] = field(default_factory=list)
    peak: Optional[int] = None


def compare(
    methods: Sequence[Tuple[str, Callable[[], Any], int]],
    device: str = "cpu",
    warmup: bool = True,
) -> Dict[str, Tuple[List[float], Optional[int]]]:
    r"""Times several calls in alternation, after one warm-up (memory-measured) call each.

    Args:

        methods (sequence of (name, fn, repeats)): The calls to compare; ``repeats`` timed
                    calls each. Repetition ``r`` runs every method that still has repeats
                    left, in the given order, before repetition ``r + 1`` starts.
        device (str): Where the calls run (for CUDA synchronisation and memory).
        warmup (bool): Whether to run the memory-measured warm-up calls (preceded by one
                    unmeasured call of the first method). Without them, the
                    memory is taken on the first timed call instead (and that call is then
                    not timed cleanly).

    Returns:
        dict name -> (list of wall-clock seconds in run order, peak extra bytes or None,
        list of process CPU seconds of the same calls).
    """
    state = [_Method(name, fn, repeats) for name, fn, repeats in methods]
    if warmup and state:
        # One-time costs of the first call on a model and input (thread pools, kernel caches)
        # belong to no method: pay them before any memory is measured.
        state[0].fn()
    for method in state:
        if method.repeats < 1:
            raise ValueError(f"repeats: must be >= 1 for {method.name}, got {method.repeats}")
        if warmup:
            _, method.peak = peak_memory_call(method.fn, device)
    for rep in range(max(m.repeats for m in state)):
        for method in state:
            if rep >= method.repeats:
                continue
            cpu_start = time.process_time()
            if rep == 0 and not warmup:
                seconds, method.peak = peak_memory_call(method.fn, device)
            else:
                seconds = time_call(method.fn, device)
            method.cpu_times.append(time.process_time() - cpu_start)
            method.times.append(seconds)
    return {m.name: (m.times, m.peak, m.cpu_times) for m in state}


def add_ratios(rows: List[Measurement]) -> None:
    r"""Sets ``time_ratio``, ``cpu_ratio`` and ``memory_ratio`` of each row against the
    Saliency row of the same model, device and batch size (None where there is no such row or
    it is zero)."""
    reference = {
        (r.model, r.device, r.batch_size): r for r in rows if r.method == BASELINE
    }
    for row in rows:
        base = reference.get((row.model, row.device, row.batch_size))
        if base is None:
            continue
        row.time_ratio = row.median_s / base.median_s if base.median_s > 0 else None
        if row.median_cpu_s is not None and base.median_cpu_s:
            row.cpu_ratio = row.median_cpu_s / base.median_cpu_s
        if row.peak_extra_bytes is not None and base.peak_extra_bytes:
            row.memory_ratio = row.peak_extra_bytes / base.peak_extra_bytes
        if row.phases_s is not None and base.median_s > 0:
            row.phase_ratios = {k: v / base.median_s for k, v in row.phases_s.items()}


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hides what native code writes to stderr (a CUDA build of torch on a machine without a
    GPU has the profiler log a failed device query there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profile_phases(fn: Callable[[], Any]) -> Dict[str, float]:
    r"""Runs ``fn`` (a PrunedGradient call on the CPU) once under ``torch.profiler``; returns
    the wall-clock seconds of each step it labelled (see
    :data:`captum_prune.pruned_gradient.PHASES`), plus ``"total"`` for the whole call."""
    from captum_prune.pruned_gradient import PHASES

    with _native_stderr_silenced():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            fn()
            total = time.perf_counter() - start
    found = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    phases = {p: found[f"PrunedGradient.{p}"] for p in PHASES if f"PrunedGradient.{p}" in found}
    phases["total"] = total
    return phases


# ------------------------------------------------------------------ the benchmark


def _build_model(name: str, device: str) -> Tuple[torch.nn.Module, str]:
    r"""The model named ``name`` in eval mode on ``device``, and a note on its weights."""
    if name == "digits":
        from captum_prune.zoo.training import DigitsRecipe, load_cached_model

        cached = load_cached_model()
        if cached is None:
            model, weights = DigitsRecipe().build_model(), "random weights (none cached)"
        else:
            model, weights = cached[0], "cached default weights"
        return model.eval().to(device), weights
    if name == "resnet8":
        from captum_prune.zoo.models import CifarResNet8

        return CifarResNet8().eval().to(device), "random weights"
    import torchvision

    return getattr(torchvision.models, name)(weights=None).eval().to(device), "random weights"


def _methods_for(
    model: torch.nn.Module, inputs: torch.Tensor, target: List[int], args: argparse.Namespace
) -> List[Tuple[str, Callable[[], Any], int, str]]:
    from captum.attr import IntegratedGradients, Saliency

    from captum_prune import PrunedGradient
    from captum_prune.pruned_gradient import DEFAULT_SPARSITY

    saliency = Saliency(model)
    pruned = PrunedGradient(model)
    batch = inputs.shape[0]
    methods: List[Tuple[str, Callable[[], Any], int, str]] = [
        (BASELINE, lambda: saliency.attribute(inputs, target=target, abs=False), args.repeats,
         "abs=False"),
    ]
    for criterion in args.criteria:
        if criterion == "taylor":
            methods.append(
                (
                    "PrunedGradient(taylor)",
                    lambda: pruned.attribute(inputs, target=target, criterion="taylor"),
                    args.repeats,
                    f"sparsity={DEFAULT_SPARSITY:g}",
                )
            )
        else:
            methods.append(
                (
                    "PrunedGradient(integrated_gradients)",
                    lambda: pruned.attribute(
                        inputs,
                        target=target,
                        criterion="integrated_gradients",
                        internal_batch_size=args.ig_internal_batch_size,
                    ),
                    args.ig_repeats,
                    f"n_steps=10, internal_batch_size={args.ig_internal_batch_size}",
                )
            )
    if not args.no_ig and (args.ig_max_batch is None or batch <= args.ig_max_batch):
        integrated = IntegratedGradients(model)
        methods.append(
            (
                f"IntegratedGradients({IG_STEPS})",
                lambda: integrated.attribute(
                    inputs,
                    target=target,
                    n_steps=IG_STEPS,
                    internal_batch_size=args.ig_internal_batch_size,
                ),
                args.ig_repeats,
                f"internal_batch_size={args.ig_internal_batch_size}",
            )
        )
    return methods


def _devices(choice: str) -> List[str]:
    if choice == "cpu":
        return ["cpu"]
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise CommandError("--device cuda: CUDA is not available on this machine")
        return ["cuda"]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def run_benchmark(
    args: argparse.Namespace,
    log: Callable[[str], None] = print,
    progress: Optional[Callable[[List[Measurement]], None]] = None,
) -> List[Measurement]:
    r"""Runs every model x device x batch size of ``args``; returns one row per method.

    ``progress`` (if given) gets the rows so far, ratios set, after each model and batch size,
    so that a long run leaves its results behind even when it is stopped.
    """
    rows: List[Measurement] = []
    generator = torch.Generator().manual_seed(args.seed)
    for device in _devices(args.device):
        for model_name in args.models:
            torch.manual_seed(args.seed)
            model, weights = _build_model(model_name, device)
            size, classes = _SMALL_MODELS.get(model_name, (args.size, 1000))
            for batch in args.batch_sizes:
                inputs = torch.randn(batch, 3, size, size, generator=generator).to(device)
                target = torch.randint(0, classes, (batch,), generator=generator).tolist()
                methods = _methods_for(model, inputs, target, args)
                log(f"{device} {model_name} ({weights}, {size}x{size}) batch {batch}: "
                    + ", ".join(m[0] for m in methods))
                results = compare([(n, f, r) for n, f, r, _ in methods], device)
                threads = torch.get_num_threads()
                for name, fn, repeats, note in methods:
                    times, peak, cpu_times = results[name]
                    summary = summarise(times, name, threads)
                    median = summary.median
                    profiled = (args.profile and device == "cpu"
                                and name.startswith("PrunedGradient"))
                    rows.append(
                        Measurement(
                            model=model_name,
                            device=device,
                            batch_size=batch,
                            method=name,
                            repeats=repeats,
                            median_s=median,
                            per_example_s=median / batch,
                            times_s=times,
                            peak_extra_bytes=peak,
                            iqr_s=summary.iqr,
                            min_s=min(times),
                            max_s=max(times),
                            median_cpu_s=summarise(cpu_times, name, threads).median,
                            note=note,
                            phases_s=profile_phases(fn) if profiled else None,
                        )
                    )
                if progress is not None:
                    add_ratios(rows)
                    progress(rows)
            del model
    add_ratios(rows)
    return rows


def machine_info(device_choice: str) -> Dict[str, Any]:
    r"""CPU model, core counts, library versions and GPU (if any), for the report."""
    import captum
    import torchvision

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: Dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "captum": captum.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "device_option": device_choice,
        "compiled_kernels": _cpu.kernels_in_use(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = list(os.getloadavg())
    return info


def _mib(value: Optional[int]) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def _seconds(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ratio(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_table(rows: Sequence[Measurement]) -> str:
    r"""A Markdown table of the rows (also readable as plain text)."""
    header = (
        "| device | model | batch | method | runs | median s | min-max s | IQR % "
        "| s / example | x Saliency | CPU s | CPU x Saliency | peak extra MiB | mem x Saliency |"
    )
    lines = [header, "|" + "---|" * 14]
    for r in rows:
        spread = ("n/a" if r.min_s is None else f"{r.min_s:.3f}-{r.max_s:.3f}")
        lines.append(
            f"| {r.device} | {r.model} | {r.batch_size} | {r.method} | {r.repeats} "
            f"| {r.median_s:.3f} | {spread} | {_iqr_percent(r)}{' (noisy)' if _noisy(r) else ''} "
            f"| {r.per_example_s:.3f} | {_ratio(r.time_ratio)} "
            f"| {_seconds(r.median_cpu_s)} | {_ratio(r.cpu_ratio)} "
            f"| {_mib(r.peak_extra_bytes)} | {_ratio(r.memory_ratio)} |"
        )
    return "\n".join(lines)


def _iqr_percent(row: Measurement) -> str:
    if row.iqr_s is None or not row.median_s:
        return "n/a"
    return f"{100 * row.iqr_s / row.median_s:.0f}"


def _noisy(row: Measurement) -> bool:
    return bool(row.iqr_s is not None and row.median_s and row.iqr_s > NOISY_IQR * row.median_s)


def busy_warnings(rows: Sequence[Measurement], info: Dict[str, Any]) -> List[str]:
    r"""Why these timings may not be what this machine does when idle: other programs kept
    the cores busy (load average), timings spread widely, or a ratio that an idle machine
    cannot give (PrunedGradient costs at least one plain gradient more than Saliency)."""
    notes = []
    load = info.get("load_average_at_start")
    cores, threads = info.get("cpu_count") or 1, info.get("torch_threads") or 1
    if load and load[0] > max(0.5, cores - threads + 0.5):
        notes.append(f"other programs kept the machine busy: load average {load[0]:.1f} at the "
                     f"start on {cores} cores, with {threads} torch threads; ratios and "
                     "times may be far off what an idle machine gives")
    noisy = [r for r in rows if _noisy(r)]
    if noisy:
        notes.append(f"{len(noisy)} of {len(rows)} rows spread widely (interquartile range over "
                     f"{NOISY_IQR:.0%} of the median, marked 'noisy')")
    odd = [r for r in rows if r.method.startswith("PrunedGradient(taylor)")
           and r.time_ratio is not None and r.time_ratio < 1.0]
    if odd:
        notes.append("PrunedGradient(taylor) came out faster than Saliency in "
                     f"{len(odd)} row(s), which an idle machine cannot give (it does a plain "
                     "gradient pass and more): the machine was disturbed")
    odd_ig = [r for r in rows if r.method.startswith("IntegratedGradients") and r.device == "cpu"
              and r.time_ratio is not None and r.time_ratio < IG_STEPS / 5]
    if odd_ig:
        notes.append(f"IntegratedGradients({IG_STEPS}) came out under {IG_STEPS // 5}x Saliency "
                     f"on the CPU in {len(odd_ig)} row(s), although it runs {IG_STEPS} gradient "
                     "passes: the machine was disturbed")
    if notes:
        notes.append("rerun on an idle machine, with more --repeats, or with --threads 1")
    return notes


def format_phase_table(rows: Sequence[Measurement]) -> str:
    r"""A Markdown table of the profiled steps, in multiples of the Saliency median."""
    from captum_prune.pruned_gradient import PHASES

    columns = list(PHASES) + ["total"]
    lines = [
        "| device | model | batch | method | " + " | ".join(columns) + " |",
        "|" + "---|" * (4 + len(columns)),
    ]
    for r in rows:
        if r.phase_ratios is None:
            continue
        cells = " | ".join(_ratio(r.phase_ratios.get(c)) for c in columns)
        lines.append(f"| {r.device} | {r.model} | {r.batch_size} | {r.method} | {cells} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line


def _positive_int_list(text: str) -> List[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive ints, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return values


def _name_list(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=_name_list, default=list(MODELS),
                        help=f"comma-separated models, of: {', '.join(MODELS)} (default: all; "
                        "resnet8: the paper's CIFAR ResNet-8, 32x32; digits: the embedded "
                        "model, 32x32, cached weights if any)")
    parser.add_argument("--batch-sizes", type=_positive_int_list, default=[1, 8],
                        help="comma-separated batch sizes (default: 1,8)")
    parser.add_argument("--device", default="all",
                        help="cpu, cuda or all (default: all = cpu and cuda if available)")
    parser.add_argument("--size", type=int, default=224,
                        help="input height and width of the torchvision models (default: 224)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed calls per method (default: 7)")
    parser.add_argument("--criteria", type=_name_list, default=["taylor"],
                        help=f"PrunedGradient criteria, of: {', '.join(CRITERIA)} "
                        "(default: taylor)")
    parser.add_argument("--ig-repeats", type=int, default=None,
                        help="timed calls of the slow methods (IntegratedGradients, the "
                             "integrated_gradients criterion) (default: min(repeats, 3))")
    parser.add_argument("--ig-internal-batch-size", type=int, default=IG_INTERNAL_BATCH,
                        help="internal_batch_size of those methods: rows per forward-backward "
                        f"pass (default: {IG_INTERNAL_BATCH}; all rows at once, Captum's "
                        "default, needs about 35 GB for ResNet-50 at batch 8)")
    parser.add_argument("--ig-max-batch", type=int, default=None,
                        help="run IntegratedGradients only at batch sizes up to this "
                        "(default: all)")
    parser.add_argument("--no-ig", action="store_true", help="leave IntegratedGradients out")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads during the run, restored after it (default: torch's)")
    parser.add_argument("--profile", action="store_true",
                        help="also time the steps of one PrunedGradient call under torch.profiler "
                             "(CPU only), in multiples of Saliency")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, inputs and targets")
    parser.add_argument("--quick", action="store_true",
                        help="tiny preset for tests: resnet18, 32x32 input, batch 1 and 2, "
                        "2 repeats, cpu")
    parser.add_argument("--json", metavar="PATH", help="write machine details and rows as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")


def _check_args(args: argparse.Namespace) -> None:
    if args.quick:
        args.models, args.batch_sizes, args.size, args.repeats = ["resnet18"], [1, 2], 32, 2
        if args.device == "all":
            args.device = "cpu"
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        raise CommandError(
            f"--models: unknown model(s) {', '.join(unknown) or '(none given)'}; "
            f"allowed: {', '.join(MODELS)}"
        )
    unknown = [c for c in args.criteria if c not in CRITERIA]
    if unknown:
        raise CommandError(f"--criteria: unknown criterion {', '.join(unknown)}; "
                           f"allowed: {', '.join(CRITERIA)}")
    if args.device not in DEVICES:
        raise CommandError(f"--device: {args.device!r} is not one of {', '.join(DEVICES)}")
    for name in ("size", "repeats", "ig_repeats", "ig_internal_batch_size", "ig_max_batch",
                 "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CommandError(f"--{name.replace('_', '-')}: must be a positive int, got {value}")
    if args.size < 32:
        raise CommandError(
            f"--size: torchvision's ResNet and VGG need at least 32 pixels, got {args.size}")
    if args.ig_repeats is None:
        args.ig_repeats = min(args.repeats, 3)
    for option in ("json", "markdown"):
        if getattr(args, option):
            check_output_file(args.json if option == "json" else args.markdown, f"--{option}")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    with torch_threads(args.threads), quiet_captum():
        return _run_checked(args)


def _run_checked(args: argparse.Namespace) -> int:
    info = machine_info(args.device)
    print(f"{info['cpu']} ({info['cpu_count']} cores, {info['torch_threads']} torch threads), "
          f"torch {info['torch']}, captum {info['captum']}, cuda: {info['cuda']}, compiled "
          f"kernels: {'on' if info['compiled_kernels'] else 'off'}")
    settings = {k: v for k, v in vars(args).items()
                if not k.startswith("_") and k not in ("json", "markdown")}
    rows = run_benchmark(args, progress=lambda rows: _write(args, info, settings, rows))
    if hasattr(os, "getloadavg"):
        info["load_average_at_end"] = list(os.getloadavg())
    print(format_table(rows))
    if any(r.phase_ratios for r in rows):
        print("\nSteps of one profiled call, x Saliency:\n" + format_phase_table(rows))
    warnings_ = busy_warnings(rows, info)
    info["warnings"] = warnings_
    for note in warnings_:
        print(f"warning: {note}", file=sys.stderr)
    _write(args, info, settings, rows)
    return 0


def _write(args: argparse.Namespace, info: dict, settings: dict, rows: List[Measurement]) -> None:
    if args.json:
        document = {"machine": info, "settings": settings, "rows": [asdict(r) for r in rows]}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write(args.json, json.dumps(document, indent=2))
    if args.markdown:
        details = ", ".join(f"{k}: {v}" for k, v in info.items() if k != "warnings")
        text = f"Machine: {details}\n\nSettings: {settings}\n\n{format_table(rows)}\n"
        for note in info.get("warnings") or ():
            text += f"\nWarning: {note}\n"
        if any(r.phase_ratios for r in rows):
            text += f"\nSteps of one profiled call, x Saliency:\n\n{format_phase_table(rows)}\n"
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        atomic_write(args.markdown, text)
