"""Running a sweep's trials on Ray: connect, put the data once, one task per trial, stream, stop cleanly.

* Connecting: ``ray.address`` from the config, else ``"auto"`` when ``RAY_ADDRESS`` is set (as under
  ``ray job submit``), else a new local instance bound to the loopback interface only (every gRPC
  server, the dashboard and the agents on 127.0.0.1; see :func:`connect_ray`).
* Tasks: one per pending trial with ``num_gpus = ray.gpus_per_trial`` (auto: a share 1/k of a GPU by
  model width and training rows, :func:`auto_gpus_per_trial`, when the cluster has GPUs; else 0),
  ``num_cpus = ray.cpus_per_trial``, ``max_retries``; the data object is ``ray.put`` once per
  data seed and handed to each task by reference (the task times fetching it).
* Fitting: before the first task one trial's request is compared with the alive nodes (:func:`require_trial_fits`,
  :mod:`le_ray.sweep.fitting`): a request no node can hold would wait forever, so on a local instance (which never
  grows) it is refused with a :class:`~le_ray.errors.UserError` naming the keys to change; on a cluster reached by
  address (whose autoscaler may still add a node) it is a warning.
* Streaming: ``ray.wait`` one result at a time; each finished trial is written atomically at once; a
  trial that fails after its retries is recorded in ``failures/`` and the sweep goes on.
* Stopping: SIGINT (Ctrl-C) and SIGTERM (``ray job stop``) take one path (:class:`StopRequested`), from
  before ``ray.init`` on (:func:`stop_on_signals`, then :func:`connect_ray` with its flag):
  outstanding trials are cancelled gently (``force=False``), given a bounded grace to end, and only
  those still running are force-cancelled; trials that finished meanwhile are still stored. Host work
  after the trials (the report) stops at once (:meth:`StopFlag.raising`). A second signal exits at once.
* A store write that fails (a folder turned read-only, a full disk, the sweep folder removed) takes the stop's path:
  the outstanding trials are cancelled, then a :class:`~le_ray.sweep.store.SweepWriteError` names the trial, the
  folder, the reason and how many trials are stored (:func:`run_sweep`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from le_ray.sweep import faults
from le_ray.atomic import to_jsonable
from le_ray.config import Config
from le_ray.config.messages import human_size
from le_ray.data.arrays import PreparedData
from le_ray.errors import UserError
from le_ray.sweep.fitting import RESOURCE_EPS, alive_nodes, node_shortfall, shortfall_message
from le_ray.sweep.store import SweepStore, SweepWriteError
from le_ray.sweep.plan import SweepPlan, for_seed
from le_ray.training.spec import TrialSpec

__all__ = ["connect_ray", "loopback_only", "concurrent_trials", "warm_up_workers", "map_on_workers",
           "auto_gpus_per_trial", "GPU_PACKING", "trial_task", "run_sweep", "SweepProgress", "StopRequested",
           "StopFlag", "stop_on_signals", "CANCEL_GRACE_S", "require_trial_fits", "local_instance"]

log = logging.getLogger("le_ray.sweep")
CANCEL_GRACE_S = 1.5  # `ray job stop` sends SIGKILL 3 s after SIGTERM by default
WAIT_S = 0.5  # how often the streaming loop looks at the stop flag
MAP_WAIT_S = 120.0  # map_on_workers: how long the workers get before the driver does the rest itself


def loopback_only() -> None:
    """Make a new local Ray instance take 127.0.0.1 as its node address, so every server binds to loopback.

    Ray resolves "localhost" to the machine's external address unless its single-machine switch
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is off; with it off the node IP is 127.0.0.1 and the GCS,
    raylet, workers, agents and dashboard listen there only. The variable is inherited by the
    processes Ray starts; the already-imported constant is set too.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


#: Ray's logger of the notice "Token authentication is enabled for this Ray cluster", said at every start of a local
#: instance: on a loopback-only instance of one user's sweep it asks nothing of them (its errors still show)
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


def quiet_local_start() -> None:
    """Before a new local instance starts: Ray's token-authentication notice off (errors kept)."""
    logging.getLogger(TOKEN_NOTICE_LOGGER).setLevel(logging.ERROR)


def connect_ray(cfg: Config, stop: "StopFlag | None" = None):
    """``ray.init`` per the module docstring; returns the context (``dashboard_url`` may be empty).

    ``stop``: the flag of an entered :func:`stop_on_signals`. A SIGINT or SIGTERM while Ray starts is then recorded
    in it like one during the trials (the caller checks it when this returns): Ray's own SIGTERM handlers are kept
    off while ``ray.init`` runs (:func:`_without_ray_sigterm_handlers`), and ours is put back on when it returns
    (Ray's core worker installs a native, aborting one).
    """
    import ray

    if ray.is_initialized():
        return None
    if stop is None:
        return ray.init(**_init_arguments(cfg))
    with _without_ray_sigterm_handlers():
        context = ray.init(**_init_arguments(cfg))
    stop.install()
    return context


def _address(cfg: Config) -> str | None:
    """The cluster a sweep of ``cfg`` connects to: ``ray.address``, else ``auto`` when ``RAY_ADDRESS`` is set (``ray
    job submit``), else None (a new local instance)."""
    return cfg.ray.address or ("auto" if os.environ.get("RAY_ADDRESS") else None)


def _init_arguments(cfg: Config) -> dict[str, Any]:
    """``ray.init``'s keyword arguments for ``cfg`` (module docstring: the address, or a new loopback-only instance)."""
    address = _address(cfg)
    kwargs: dict[str, Any] = {"namespace": cfg.ray.namespace, "log_to_driver": True}
    if address is None:  # a new local instance, never a stray cluster that happens to run on this machine
        loopback_only()
        quiet_local_start()
        kwargs.update(address="local", num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus,
                      dashboard_host=cfg.ray.dashboard_host, include_dashboard=cfg.ray.include_dashboard,
                      logging_level=logging.WARNING)  # the driver prints the dashboard URL itself
    else:
        kwargs["address"] = address
    return kwargs


@contextmanager
def _without_ray_sigterm_handlers() -> Iterator[None]:
    """While inside, Ray does not install its Python SIGTERM handlers, so a SIGTERM reaches the one installed before.

    ``ray.init`` installs one that exits at once with status 15 and, when it starts a local instance, one that kills
    that instance and exits with status 1; either would turn an early ``ray job stop`` into an exit without the
    "stopped" line. Both go through ``ray._private.utils.set_sigterm_handler`` (tests/test_lifecycle.py checks it
    is still there), a no-op while inside.
    """
    from ray._private import utils

    original = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


# --------------------------------------------------------------------------- the Ray task

def trial_task(data_refs: list, spec: TrialSpec, cpus: int, fault: dict[str, str]) -> dict[str, Any]:
    """Body of the Ray task: fetch the data, train on the GPU Ray assigned (or CPU), return the JSON record."""
    import ray

    from le_ray.training.trial import run_trial

    logging.getLogger("le_ray").setLevel(os.environ.get("LE_RAY_TRIAL_LOG_LEVEL", "WARNING"))
    started_at = time.time()
    data: PreparedData = ray.get(data_refs[0])  # zero-copy from the node's object store
    attached = time.time() - started_at
    faults.before_trial(fault, spec.loss, spec.seed)
    gpu_ids = list(ray.get_gpu_ids())
    result = run_trial(data, spec, assigned_gpu_ids=gpu_ids, num_threads=cpus,
                       on_step=faults.step_hook(fault, spec.loss, spec.seed, spec.trial_id))
    record = result.to_record()
    record["timings"]["attach_data"] = attached
    context = ray.get_runtime_context()
    record.update(gpu_ids=[str(g) for g in gpu_ids], node=context.get_node_id(), host=result.node,
                  worker_pid=os.getpid(), started_at=started_at, finished_at=time.time(),
                  peak_rss_bytes=_peak_rss())
    return to_jsonable(record)


def _peak_rss() -> int:
    """Peak resident memory of this process in bytes (Linux ru_maxrss is in KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _import_trial_modules() -> int:
    """Warm-up task body: import the trial code and touch its lazy initialisations once.

    Importing torch, polars and the trial code and running their first calls costs a new worker
    seconds; doing it here keeps that off the first real trial. In a GPU task (Ray made a
    GPU visible) the same holds for the CUDA context, cuBLAS and fused Adam's kernels: one tiny step on the
    GPU creates them while the driver still prepares data and plans. Returns the worker's pid.
    """
    import numpy as np
    import torch

    from le_ray import metrics
    from le_ray.training.devices import flush_denormals

    flush_denormals()  # first: torch's intra-op threads, started by the first parallel op, inherit it
    rng = np.random.default_rng(0)
    p, y = rng.random(64), (rng.random(64) < 0.5).astype(float)
    metrics.model_summary(p, y, rng.integers(0, 2, 64))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        layer = torch.nn.Linear(4, 1, device=device)
        cuda = {"fused": True, "capturable": True} if device.type == "cuda" else {}
        optimizer = torch.optim.Adam(layer.parameters(), **cuda)
        layer(torch.randn(8, 4, device=device)).sum().backward()
        optimizer.step()
    if len(devices) > 1:
        torch.cuda.synchronize()
    return os.getpid()


# Trials per GPU when ``ray.gpus_per_trial`` is null (auto), first matching row wins:
# (largest hidden width up to, training rows up to, trials per GPU); None = any.
# Measured with bench/gpu_check.py's packing stage on one H200 (bench/README, 2026-12-04): 1, 2, 4, 8 trials at
# once gave 1.00/1.24/1.41/1.48x the trials per minute of one (quickstart shape) and 1.00/1.51/1.98/2.35x
# (default_net, 2.9M rows); the smallest k within 5% of the best is 8 for both. Larger data is not measured.
GPU_PACKING: tuple[tuple[int | None, int | None, int], ...] = (
    (128, None, 8),           # small nets (quickstart's 128-64): 8 at once = 1.48x one trial's trials/min (H200)
    (256, 20_000_000, 8),     # default_net on up to 20M training rows: 8 at once = 2.35x one (H200, 2.9M rows)
    (256, None, 2),           # default_net on more rows: not measured; each trial stages its splits on the GPU
    (None, None, 1),          # wider nets: a trial of their own
)


def auto_gpus_per_trial(hidden_sizes, train_rows: int | None, cluster_gpus: float) -> float:
    """GPU share per trial for ``ray.gpus_per_trial: null``: 0 without GPUs, else ``1 / k`` from :data:`GPU_PACKING`.

    ``hidden_sizes``: the model's hidden widths; ``train_rows``: rows a trial trains on (None: unknown, read as
    small); ``cluster_gpus``: GPUs in the cluster. The share never exceeds the cluster's GPUs.
    """
    if cluster_gpus <= 0:
        return 0.0
    width, rows = max(hidden_sizes, default=0), train_rows or 0
    k = next(k for w, r, k in GPU_PACKING if (w is None or width <= w) and (r is None or rows <= r))
    return min(1.0 / k, float(cluster_gpus))


def _resources(cfg: Config, train_rows: int | None = None) -> dict[str, Any]:
    import ray

    gpus = cfg.ray.gpus_per_trial
    if gpus is None:  # auto: a share of a GPU by model and data size when the cluster has GPUs
        gpus = auto_gpus_per_trial(cfg.model.hidden_sizes, train_rows, ray.cluster_resources().get("GPU", 0))
    return {"num_cpus": cfg.ray.cpus_per_trial, "num_gpus": gpus, "max_retries": cfg.ray.max_retries,
            "retry_exceptions": cfg.ray.retry_exceptions}


def concurrent_trials(cluster: Mapping[str, float], cpus_per_trial: int, gpus_per_trial: float) -> int:
    """Trials Ray can run at once on a cluster of ``cluster`` resources (``ray.cluster_resources()``: CPU, GPU
    counts): CPUs // cpus_per_trial, and for GPU trials no more than GPUs / gpus_per_trial (Ray counts fractions
    in 1/10,000ths, so 1 / (1/3) is 3, not 2.999...).

    0 when the cluster's totals cannot hold one trial: no trial would ever start, and :func:`require_trial_fits`
    says so (per node, which totals cannot: two 1-CPU nodes hold no 2-CPU trial).
    """
    slots = int(cluster.get("CPU", 0.0) // max(cpus_per_trial, 1))
    if gpus_per_trial > 0:
        slots = min(slots, int(cluster.get("GPU", 0.0) / gpus_per_trial + RESOURCE_EPS))
    return slots


def local_instance(cfg: Config, nodes: list[Mapping[str, Any]] = ()) -> bool:
    """Whether the Ray a sweep of ``cfg`` runs on is a local instance, which never grows: no ``ray.address`` nor
    ``RAY_ADDRESS`` (so :func:`connect_ray` starts one bound to 127.0.0.1), and every alive node of ``nodes``
    (``ray.nodes()``) on the loopback address. A cluster another caller connected to in this process has nodes at
    real addresses, so it counts as a cluster even without the variable."""
    loopback = all(node.get("NodeManagerAddress", "127.0.0.1") in ("127.0.0.1", "localhost")
                   for node in alive_nodes(nodes))
    return _address(cfg) is None and loopback


def require_trial_fits(cfg: Config, options: Mapping[str, Any]) -> None:
    """Refuse (:class:`~le_ray.errors.UserError`) a trial request that no alive node of a local instance can hold
    (:func:`le_ray.sweep.fitting.node_shortfall`): its tasks would wait forever. On a cluster reached by address,
    whose autoscaler may add a node that holds one, log a warning instead.

    ``options``: one trial's Ray options (:func:`_resources`: ``num_cpus``, ``num_gpus``). Called once, after Ray is
    connected and before the first task is queued (:func:`warm_up_workers`; ``le-ray tune`` before its search).
    """
    import ray

    if not ray.is_initialized():  # no cluster to compare with (the runners connect first; unit tests fake Ray)
        return
    try:
        nodes = ray.nodes()
    except Exception as error:  # noqa: BLE001 - a cluster that does not list its nodes: the check cannot run
        log.info("could not list the Ray nodes (%s); not checking that a trial fits one", type(error).__name__)
        return
    short = node_shortfall(nodes, options["num_cpus"], options["num_gpus"])
    if short is None:
        return
    local = local_instance(cfg, nodes)
    message = shortfall_message(short, cfg.ray, local=local)
    if local:
        raise UserError(message)
    log.warning("WARNING: %s", message)


def warm_up_workers(cfg: Config, num_trials: int, train_rows: int | None = None) -> list:
    """Start one worker per trial slot (:func:`concurrent_trials`) and import the trial code there, without
    waiting (none when no trial is pending, e.g. a resume with every trial stored). First
    :func:`require_trial_fits`: a trial no node can hold is refused before any task is queued."""
    if num_trials <= 0:
        return []
    import ray

    options = _resources(cfg, train_rows)
    require_trial_fits(cfg, options)
    slots = min(num_trials, concurrent_trials(ray.cluster_resources(), options["num_cpus"], options["num_gpus"]))
    task = ray.remote(_import_trial_modules).options(**options)
    return [task.remote() for _ in range(slots)]


def map_on_workers(fn: Callable[[Any], Any], items: list, *, wait_s: float = MAP_WAIT_S) -> list:
    """``[fn(x) for x in items]``, each call a Ray task (1 CPU, no retry) on the cluster's workers, in parallel.

    For independent host work after the trials, when the workers sit idle: the report's figures (each ~0.2–0.7 s
    of matplotlib, one after another in the driver otherwise). Ray ships ``fn`` with cloudpickle: a module-level
    function (``render_png``) travels by reference, so each worker imports only its module. A call not back
    within ``wait_s`` (a cluster with no free CPU), or one that failed on its worker, is made here instead, so
    the result never depends on the cluster's state. Without Ray connected, or with one item, everything runs
    here.
    """
    import ray

    if len(items) < 2 or not ray.is_initialized():
        return [fn(x) for x in items]
    task = ray.remote(fn).options(num_cpus=1, max_retries=0)
    refs = [task.remote(x) for x in items]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s)
    done, out = set(ready), []
    for ref, item in zip(refs, items):
        if ref in done:
            try:
                out.append(ray.get(ref))
                continue
            except Exception as error:  # failed on its worker (a task error, a lost worker): the same call here
                log.info("%s failed on a worker (%s); running it here", fn.__name__, type(error).__name__)
        else:
            log.info("%s not back from a worker within %.0f s; running it here", fn.__name__, wait_s)
            ray.cancel(ref, force=False)  # never force: see _cancel
        out.append(fn(item))
    return out


# --------------------------------------------------------------------------- stopping

class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived: stop the sweep cleanly (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM


class StopFlag:
    """Which stop signal arrived (None while running); the driver checks it between ``ray.wait`` calls.

    ``doing``: what the first signal's message says happens next; ``at_once``: raise :class:`StopRequested` from the
    handler itself (only inside :meth:`raising`, where no Ray call is under way).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.doing = "cancelling outstanding trials"
        self.at_once = False
        self.handler: Callable[[int, Any], None] | None = None  # set by stop_on_signals

    def check(self) -> None:
        """Raise :class:`StopRequested` when a stop signal has arrived."""
        if self.signum is not None:
            raise StopRequested(self.signum)

    def install(self) -> None:
        """(Re)install the handler on SIGINT and SIGTERM, e.g. after ``ray.init`` (its core worker puts its own
        native handler on SIGTERM)."""
        if self.handler is not None:
            for s in _STOP_SIGNALS:
                signal.signal(s, self.handler)

    @contextmanager
    def raising(self, doing: str) -> Iterator[None]:
        """While inside, a stop signal raises :class:`StopRequested` at once (one that came before raises on entry):
        for host work that a stop may cut anywhere because every file it writes is written atomically (the report).
        ``doing``: what the signal's message says happens. Ray calls inside go in :meth:`deferred`."""
        self.doing, self.at_once = doing, True
        try:
            self.check()
            yield
        finally:
            self.at_once = False

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside :meth:`raising`: a stop signal is only recorded while a Ray call runs, and raised when it returns."""
        at_once, self.at_once = self.at_once, False
        try:
            yield
        finally:
            self.at_once = at_once
        self.check()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """While inside: the first SIGINT/SIGTERM sets the yielded :class:`StopFlag`, a second one exits at once.

    The handler only records the signal (outside :meth:`StopFlag.raising`): raising from it while Ray's native
    code runs (``ray.wait``) corrupts the interpreter state, so the driver raises :class:`StopRequested` itself at
    its next check (at most :data:`WAIT_S` later). Entered before ``ray.init``, pass the flag to
    :func:`connect_ray`, which puts the handler back on after Ray's core worker replaced it on SIGTERM (with a
    native handler that prints a stack trace and aborts).
    """
    flag = StopFlag()

    def handler(signum, frame):
        if flag.signum is not None:
            os.write(2, f"\nsecond {signal.Signals(signum).name}: exiting now\n".encode())
            os._exit(128 + signum)
        flag.signum = signum
        os.write(2, f"\n{signal.Signals(signum).name}: stopping ({flag.doing}; a second signal exits at "
                    "once)\n".encode())
        if flag.at_once:
            raise StopRequested(signum)

    flag.handler = handler
    previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    flag.install()
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)  # None: a handler not set from Python


# --------------------------------------------------------------------------- streaming driver

@dataclass
class SweepProgress:
    """Counts and timing for the live progress line."""
    total: int
    already_done: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    data_refs: dict = field(default_factory=dict)

    @property
    def stored(self) -> int:
        return self.already_done + self.done

    def line(self, running: int) -> str:
        finished = self.done + self.failed
        elapsed = time.perf_counter() - self.started
        remaining = self.total - self.already_done - finished
        eta = elapsed / finished * remaining if finished else float("nan")
        eta_text = "?" if math.isnan(eta) else f"{eta:.0f}s"
        return (f"trials {self.stored}/{self.total} done, {running} queued or running, {self.failed} failed"
                f" | elapsed {elapsed:.0f}s, ETA {eta_text}")


def _trial_log_line(record: dict[str, Any], progress: SweepProgress) -> str:
    m = record.get("metrics", {})
    keys = [k for k in ("logloss", "ece", "roc_auc", "logratio_calib_iw") if m.get(k) is not None]
    shown = ", ".join(f"{k} {m[k]:.5g}" for k in keys)
    return (f"[{progress.stored}/{progress.total}] seed {record['seed']} {record['loss']}: "
            f"{shown} ({record['timings']['total']:.1f} s, {record['device'].split(' ')[0]}, "
            f"node {str(record.get('node'))[:8]})")


def _submit(cfg: Config, plan: SweepPlan, fault: dict[str, str], refs: dict) -> dict[Any, TrialSpec]:
    """``ray.put`` each data object once (into ``refs``), then one task per pending trial."""
    import ray

    options = _resources(cfg, plan.train_rows)
    refs.update({seed: ray.put(data) for seed, data in plan.data_by_seed.items()})
    remote = ray.remote(trial_task).options(**options)
    stored, arrays = _stored_bytes(list(refs.values())), sum(d.nbytes for d in plan.data_by_seed.values())
    log.info("data in the object store: %s (%s bytes) for arrays of %s (%s bytes)",
             "unknown" if stored is None else human_size(stored), stored, human_size(arrays), arrays)
    return {remote.remote([for_seed(refs, spec.seed)], spec, cfg.ray.cpus_per_trial, fault): spec
            for spec in plan.pending}


def _stored_bytes(refs: list) -> int | None:
    """Bytes the object store holds for ``refs`` (None when Ray does not say)."""
    import ray

    try:
        found = ray.experimental.get_object_locations(refs)
        return int(sum(found[r]["object_size"] or 0 for r in refs))
    except Exception:  # noqa: BLE001 - an experimental API: the figure is informative only
        return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_reason(exc: BaseException) -> str:
    """``Type: message`` of what made a trial fail: the task's own exception when Ray wraps it (a RayTaskError's
    ``cause``; its text opens with ``ray::trial_task() (pid=..., ip=...)`` and colour codes), on one line."""
    cause = getattr(exc, "cause", None)
    inner = cause if isinstance(cause, BaseException) else exc
    lines = [line.strip() for line in _ANSI.sub("", str(inner)).splitlines() if line.strip()]
    text = next((line for line in lines if not line.startswith("ray::")), lines[0] if lines else "")
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def _store_one(store: SweepStore, ref, spec: TrialSpec, progress: SweepProgress, echo) -> None:
    """Write the finished trial of ``ref`` (or its failure) to the store."""
    import ray

    try:
        record = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - a failed trial must not stop the sweep
        progress.failed += 1
        reason = failure_reason(exc)
        store.write_failure(spec.trial_id, {"loss": spec.loss, "seed": spec.seed, "error": reason,
                                            "traceback": "".join(traceback.format_exception(exc))})
        echo(f"trial seed {spec.seed} {spec.loss} FAILED after retries: {reason[:300]}")
        return
    store.write_trial(record)
    progress.done += 1
    echo(_trial_log_line(record, progress))


def _collect(store: SweepStore, futures: dict[Any, TrialSpec], progress: SweepProgress, echo,
             stop: StopFlag) -> None:
    """Stream finished trials to the store as they complete (``ray.wait``, one at a time)."""
    import ray

    last_line = 0.0
    while futures:
        stop.check()
        ready, _ = ray.wait(list(futures), num_returns=1, timeout=WAIT_S)
        for ref in ready:
            _store_one(store, ref, futures.pop(ref), progress, echo)
        if time.perf_counter() - last_line > 10 or ready:
            echo(progress.line(len(futures)), live=True)
            last_line = time.perf_counter()


def _cancel(store: SweepStore, futures: dict[Any, TrialSpec], progress: SweepProgress, echo) -> None:
    """Cancel outstanding trials (a KeyboardInterrupt raised in each task), wait a bounded grace, and keep the
    ones that finished before their cancellation took effect.

    Never ``force=True``: force-cancelling a task whose gentle cancellation or completion is under way aborts the
    driver's core worker in Ray 2.60 (``Check failed: ... Tried to complete task that was not pending``, seen in
    this suite on 2026-12-05), and the process with it. A task still running after the grace ends when the
    driver exits (Ray stops a finished job's workers); a driver that stays (one Ray instance shared by several
    sweeps) leaves it to finish unread.
    """
    import ray

    refs = list(futures)
    for ref in refs:
        try:
            ray.cancel(ref, force=False)
        except Exception:  # noqa: BLE001 - already finished or gone
            pass
    ready, still = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S) if refs else ([], [])
    if still:
        log.info("%d cancelled trial task(s) still running after %.1f s; they end with this driver", len(still),
                 CANCEL_GRACE_S)
    for ref in ready:  # a trial that finished before its cancellation took effect is kept
        try:
            store.write_trial(ray.get(ref, timeout=1.0))
            progress.done += 1
        except Exception:  # noqa: BLE001 - cancelled
            pass


def run_sweep(cfg: Config, store: SweepStore, plan: SweepPlan, *, echo: Callable[..., None],
              stop: StopFlag | None = None) -> SweepProgress:
    """Run every pending trial on Ray and stream the results to ``store``.

    Raises :class:`StopRequested` (after cancelling what is outstanding) when ``stop`` (from
    :func:`stop_on_signals`) reports a signal, or on KeyboardInterrupt; every finished trial file stays. A store
    write that fails (:class:`~le_ray.sweep.store.SweepWriteError`: not writable, no space left, the sweep folder
    removed) stops the sweep the same way, then raises a SweepWriteError saying so (:func:`_write_failed`).
    """
    stop = stop or StopFlag()
    fault = faults.from_environment()
    progress = SweepProgress(total=len(plan.specs), already_done=len(plan.specs) - len(plan.pending))
    futures: dict[Any, TrialSpec] = {}
    try:
        futures = _submit(cfg, plan, fault, progress.data_refs)
        _collect(store, futures, progress, echo, stop)
    except (StopRequested, KeyboardInterrupt):
        _cancel(store, futures, progress, echo)
        raise
    except SweepWriteError as failed:
        outstanding = len(futures)
        _cancel(store, futures, progress, echo)
        raise _write_failed(failed, store, progress, outstanding) from failed
    return progress


def _write_failed(failed: SweepWriteError, store: SweepStore, progress: SweepProgress,
                  outstanding: int) -> SweepWriteError:
    """The error that ends a sweep whose store write ``failed``: its reason, the ``outstanding`` trials cancelled,
    and, unless the sweep folder is gone, how many trials it stores and that a rerun resumes it."""
    stopped = f"{failed}; the sweep stopped and cancelled its {outstanding} outstanding trial(s)"
    if failed.removed:
        return SweepWriteError(f"{stopped}; its trials went with the folder: start the sweep again", removed=True)
    return SweepWriteError(f"{stopped}; {progress.stored} of {progress.total} trials are stored in "
                           f"{str(store.root)!r}: once the folder can be written again (free space, write "
                           "permission), rerun the same command to resume it: it trains only the missing trials")
