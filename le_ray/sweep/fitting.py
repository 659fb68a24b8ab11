"""Whether one trial's Ray request fits a node of the cluster, and what to change when it does not.

Ray places a task on one node, never across nodes, and a request no alive node can hold waits forever (the
autoscaler logs "No available node types can fulfill resource request" and the sweep shows ``0/N done``):
:func:`node_shortfall` says whether one alive node holds a trial of C CPUs and G GPUs (a GPU share such as
0.125 on a node with one GPU), :func:`shortfall_message` words a refusal (a local instance, which never grows)
or a warning (a cluster, whose autoscaler may still add a node), naming the keys to change. Pure functions of
``ray.nodes()`` entries; :func:`le_ray.sweep.driver.require_trial_fits` asks Ray and acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RESOURCE_EPS", "Shortfall", "alive_nodes", "node_shortfall", "shortfall_message"]

RESOURCE_EPS = 1e-6  # Ray counts resources in 1/10,000ths: a request within this of a node's total fits it


@dataclass(frozen=True)
class Shortfall:
    """A trial request no alive node can hold: ``cpus`` CPUs and ``gpus`` GPUs per trial, against ``alive`` nodes.

    ``max_cpus``, ``max_gpus``: the most CPUs and the most GPUs any alive node has (not necessarily one node);
    ``cpu_room``: the most CPUs on a node that has the GPUs asked for, ``gpu_room``: the most GPUs on a node that has
    the CPUs asked for (None: no such node), i.e. what a trial could ask for when only the other resource changes.
    """
    cpus: float
    gpus: float
    max_cpus: float
    max_gpus: float
    alive: int
    cpu_room: float | None = None
    gpu_room: float | None = None


def _holds(resources: Mapping[str, float], unit: str, amount: float) -> bool:
    """Whether a node's ``resources`` reach ``amount`` of ``unit`` (within Ray's 1/10,000 granularity)."""
    return amount <= float(resources.get(unit, 0.0)) + RESOURCE_EPS


def alive_nodes(nodes: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The alive entries of ``ray.nodes()`` (``Alive``; ``alive`` in some Ray versions)."""
    return [node for node in nodes if node.get("Alive", node.get("alive", False))]


def node_shortfall(nodes: list[Mapping[str, Any]], cpus: float, gpus: float) -> Shortfall | None:
    """None when one alive node of ``nodes`` can hold a trial of ``cpus`` CPUs and ``gpus`` GPUs at once; else why not.

    ``nodes``: ``ray.nodes()`` entries (``Alive``; ``Resources``: totals such as ``{"CPU": 2.0, "GPU": 1.0}``). A
    node holds the trial when both its totals reach the request: Ray places a task on one node, never across nodes,
    and a share of a GPU (0.125) on one GPU of a node that has one. Dead nodes count for nothing.
    """
    alive = [node.get("Resources") or {} for node in alive_nodes(nodes)]
    if any(_holds(r, "CPU", cpus) and _holds(r, "GPU", gpus) for r in alive):
        return None

    def most(unit: str, among: list) -> float | None:
        return max((float(r.get(unit, 0.0)) for r in among), default=None)
    return Shortfall(float(cpus), float(gpus), most("CPU", alive) or 0.0, most("GPU", alive) or 0.0, len(alive),
                     cpu_room=most("CPU", [r for r in alive if _holds(r, "GPU", gpus)]),
                     gpu_room=most("GPU", [r for r in alive if _holds(r, "CPU", cpus)]))


def _amount(count: float, unit: str) -> str:
    """``2 CPUs``, ``1 CPU``, ``0.125 GPU``, ``0 GPUs``."""
    return f"{count:g} {unit}" + ("" if 0 < count <= 1 else "s")


def shortfall_message(short: Shortfall, ray_cfg: Any, *, local: bool) -> str:
    """The refusal (``local``: a Ray instance on this machine's loopback, which no node joins) or the warning (a
    cluster, which may gain one) for ``short``: the request and the keys it comes from, the largest node, the keys
    to change.

    ``ray_cfg``: the config's ``ray`` section (``cpus_per_trial``, ``gpus_per_trial``, ``num_cpus``, ``num_gpus``).
    """
    def setting(value: Any, used: float) -> str:
        return f"null (auto: {used:g})" if value is None else f"{value:g}"
    asked = (f"each trial asks Ray for {_amount(short.cpus, 'CPU')} and {_amount(short.gpus, 'GPU')} "
             f"(ray.cpus_per_trial = {setting(ray_cfg.cpus_per_trial, short.cpus)}, ray.gpus_per_trial = "
             f"{setting(ray_cfg.gpus_per_trial, short.gpus)})")
    cpus, gpus = _amount(short.max_cpus, "CPU"), _amount(short.max_gpus, "GPU")
    largest = ("no alive node" if short.alive == 0 else f"one alive node, with {cpus} and {gpus}" if short.alive == 1
               else f"{short.alive} alive nodes, with at most {cpus} and at most {gpus} each")
    if short.cpu_room is not None and short.gpu_room is not None:
        largest += " (but none with both at once)"
    fixes = _shortfall_fixes(short, ray_cfg, local=local)
    if local:
        return (f"no Ray node can ever run a trial: {asked}, but this local Ray instance (on this machine's loopback, "
                f"where no node joins) has {largest}. {fixes}. No trial was started.")
    return (f"no Ray node can run a trial yet: {asked}, but the cluster has {largest}. The trials wait until the "
            f"cluster adds a node that holds one (an autoscaler may; else they wait forever: stop with Ctrl-C). "
            f"{fixes}.")


def _shortfall_fixes(short: Shortfall, ray_cfg: Any, *, local: bool) -> str:
    """The keys that make one trial fit, as one sentence: ``ray.cpus_per_trial`` / ``ray.gpus_per_trial`` down to
    what a node has, (a local instance) ``ray.num_cpus`` / ``ray.num_gpus`` up, (a cluster) a node that holds one.

    Each resource no node offers beside the other needs its fix ("and"); when each alone fits some node, changing
    either is enough ("or").
    """
    cpu_limit = short.max_cpus if short.cpu_room is None else short.cpu_room
    gpu_limit = short.max_gpus if short.gpu_room is None else short.gpu_room
    fixes = []
    if short.cpus > cpu_limit + RESOURCE_EPS:
        now = "null: this machine's cores" if ray_cfg.num_cpus is None else f"{ray_cfg.num_cpus:g}"
        fixes.append(f"lower ray.cpus_per_trial to {cpu_limit:g} or less" + (
            f" or raise ray.num_cpus (the CPUs this local instance offers; now {now})" if local else ""))
    if short.gpus > gpu_limit + RESOURCE_EPS:
        now = "null: this machine's GPUs" if ray_cfg.num_gpus is None else f"{ray_cfg.num_gpus:g}"
        fixes.append(("set ray.gpus_per_trial to 0 or null (auto: a GPU share only where there is a GPU)"
                      if gpu_limit <= 0 else f"lower ray.gpus_per_trial to {gpu_limit:g} or less") + (
            f" or, on a machine with more GPUs, raise ray.num_gpus (the GPUs this local instance offers; now {now})"
            if local else ""))
    either = short.cpu_room is not None and short.gpu_room is not None
    text = (", or " if either else ", and ").join(fixes)
    text = ("Either " + text if either else text[0].upper() + text[1:]) if text else "Change the request"
    return text if local else f"{text}; or add a node that holds one trial to the cluster"
