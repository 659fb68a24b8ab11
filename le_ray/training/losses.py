"""CTR training losses: Localized Entropy (LE), BCE and focal loss.

Notation (every per-sample tensor is 1-D with N entries, C = number of conditions):

* ``z`` [N] logits (``[N, 1]`` is flattened), ``y`` [N] targets in [0, 1],
  ``c`` [N] integer condition ids (ad ids) in [0, C), ``w`` [N] sample weights
  (w_i >= 0; w_i = 1 when none are given).
* ``BCE_i = max(z_i, 0) - z_i*y_i + log1p(exp(-|z_i|))`` (stable with-logits form),
  ``b_i = w_i * BCE_i``.

Localized Entropy divides each condition's summed BCE by the cross-entropy that a
constant predictor at the condition's base rate would score on the same labels:

    num_j   = sum_{i: c_i = j} b_i
    ones_j  = sum_{i: c_i = j} w_i*y_i          zeros_j = sum_{i: c_i = j} w_i - ones_j
    p_j     = base_rates[j] if j < len(base_rates) and base_rates[j] is finite and in [0, 1]
              else ones_j / max(ones_j + zeros_j, 1)      (the empirical rate)
    p_j     = clamp(p_j, eps, 1 - eps)
    den_j   = max(ones_j*(-log p_j) + zeros_j*(-log(1 - p_j)), eps) ** norm_strength
    LE      = sum_{j present in batch} cw_j * num_j / den_j / max(W, 1),   W = sum_i w_i (or N)

``cw_j`` is ``condition_weights[j]`` when finite and > 0, else 1.  With
``norm_strength = 0`` every factor is 1 and LE is the (weighted) mean BCE.

Everything is vectorised: the per-condition sums (count, weight, ones) are ONE ``scatter_add_``
of a stacked [3, N] source into a [3, C] buffer (per slot in row order, so the sums are those of
three separate 1-D reductions, bit for bit); no Python loop over samples or conditions.  What
does not change between batches (the supplied rates, their log terms, the condition weights) is
prepared once as :class:`LEConstants` (an objective keeps it).  With ``num_conditions`` given the
loss, including the update of a :class:`le_ray.training.cross_batch.CrossBatchHistory`, performs
no host synchronisation and has static shapes (it can be captured in a CUDA graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "WindowHistory",
    "LEConstants",
    "le_constants",
    "bce_loss",
    "focal_loss",
    "localized_entropy",
    "per_condition_le_stats",
    "stats_dtype",
    "le_stat_tensors",
    "LE_STAT_KEYS",
]

Tensor = torch.Tensor


class WindowHistory(Protocol):
    """What :func:`localized_entropy` needs of a cross-batch history
    (implemented by :class:`le_ray.training.cross_batch.CrossBatchHistory`)."""

    @property
    def num_conditions(self) -> int: ...

    def window_rows(self, num_conditions: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Window sums as ([2, C] positive / negative weight, [C] b), float64."""

    def update(self, conditions: Tensor, targets: Tensor, b: Tensor,
               sample_weights: Optional[Tensor] = None, counts: Optional[Tensor] = None) -> None:
        """Append a batch (conditions [N], targets [N], b [N] = w*BCE detached, w [N];
        counts [C]: the batch's rows per condition when the caller has them)."""


# --------------------------------------------------------------------------- helpers


def stats_dtype(device: torch.device) -> torch.dtype:
    """Dtype of accumulated statistics (the [C]-sized LE sums, the loops' running loss sums, gradient
    diagnostics): float64 (cheap at these sizes), except on MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def _flat_inputs(
    logits: Tensor,
    targets: Tensor,
    conditions: Optional[Tensor] = None,
    sample_weights: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
    """Flatten to z [N], y [N] (logit dtype), c [N] int64 and w [N] on the logits' device."""
    z = logits.reshape(-1) if logits.dim() == 2 and logits.shape[1] == 1 else logits
    if z.dim() != 1:
        raise ValueError(f"logits must be [N] or [N, 1], got {tuple(logits.shape)}")
    n = z.shape[0]

    def flat(t: Tensor, name: str, dtype: torch.dtype) -> Tensor:
        if t.numel() != n:
            raise ValueError(f"{name} has {t.numel()} entries, logits have {n}")
        t = t if t.dim() == 1 else t.reshape(-1)  # no view op for what is already flat
        return t.to(device=z.device, dtype=dtype)

    y = flat(targets, "targets", z.dtype)
    c = None if conditions is None else flat(conditions, "conditions", torch.long)
    w = None if sample_weights is None else flat(sample_weights, "sample_weights", z.dtype)
    return z, y, c, w


def _bce_terms(z: Tensor, y: Tensor, w: Optional[Tensor]) -> Tensor:
    """b [N] = w * BCE-with-logits; torch's kernel is the stable form with exact gradients."""
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    return bce if w is None else bce * w


def _per_condition(
    values: Optional[Tensor], size: int, fill: float, device: torch.device, dtype: torch.dtype
) -> Optional[Tensor]:
    """A [C] vector padded with ``fill`` (or truncated) to ``size`` on ``device``."""
    if values is None:
        return None
    v = torch.as_tensor(values).reshape(-1).to(device=device, dtype=dtype, non_blocking=True)
    if v.numel() >= size:
        return v[:size]
    return torch.cat([v, v.new_full((size - v.numel(),), fill)])


def _infer_num_conditions(c: Tensor, *sizes: Optional[int]) -> int:
    """C = max(the sized per-condition inputs, max(c) + 1); max(c) syncs with the host."""
    known = [s for s in sizes if s is not None]
    top = int(c.max()) + 1 if c.numel() else 0  # host sync
    return max(known + [top])


def _numel(values) -> Optional[int]:
    return None if values is None else torch.as_tensor(values).numel()


#: Rows below which float32 sums of 0/1 counts are exact (2**24: float32 has a 24-bit significand).
FLOAT32_EXACT_COUNT = 2**24


def _condition_rows(y: Tensor, c: Tensor, w: Optional[Tensor], size: int, dtype) -> Tensor:
    """[3, C] rows (count, weight = sum w, ones = sum w*y), detached, in ``dtype``.

    One ``scatter_add_`` of the stacked [3, N] source (1, w, w*y) along the condition axis,
    accumulated in the inputs' dtype, then cast: float32 counts are exact below 2**24 rows, which
    every training batch is; a longer input (a whole evaluation split) accumulates in ``dtype``
    (the counts of a condition past 2**24 rows would stop growing in float32).  Each slot receives
    its rows in batch order, as three 1-D ``index_add_`` would.
    """
    y = y.detach() if y.requires_grad else y
    ones = torch.ones_like(y)
    if w is None:
        src = torch.stack([ones, ones, y])
    else:
        w = w.detach() if w.requires_grad else w
        src = torch.stack([ones, w, w * y])
    if y.numel() >= FLOAT32_EXACT_COUNT:
        src = src.to(dtype)
    rows = src.new_zeros(3, size).scatter_add_(1, c.expand(3, -1), src)
    return rows.to(dtype)


def _supplied_rates(
    base_rates: Optional[Tensor], size: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The supplied rates [C] and the mask [C] of the usable ones (finite and in [0, 1]; the earlier system clipped
    any finite rate into (0, 1), le_ray counts one outside [0, 1] as unknown: README, "The maths, briefly").

    ``base_rates`` is padded with NaN (or truncated) to C, all NaN when None, so ids beyond
    len(base_rates) are never usable.  Per-batch work is left to :func:`_condition_rate`.
    """
    rate = _per_condition(base_rates, size, math.nan, device, dtype)
    if rate is None:
        rate = torch.full((size,), math.nan, dtype=dtype, device=device)
    return rate, torch.isfinite(rate) & (rate >= 0) & (rate <= 1)


def _condition_rate(ones: Tensor, zeros: Tensor, rate: Tensor, supplied: Tensor, eps: float) -> Tensor:
    """p [C] = clamp(rate_j if supplied_j else ones_j / max(ones_j + zeros_j, 1), eps, 1 - eps).

    ``rate`` / ``supplied`` come from :func:`_supplied_rates`; the empirical rate fills in where no
    usable rate was supplied.  Static shapes, no host synchronisation.
    """
    empirical = ones / (ones + zeros).clamp_min(1.0)
    return torch.where(supplied, rate, empirical).clamp(eps, 1.0 - eps)


def _entropy_den(ones: Tensor, zeros: Tensor, p: Tensor) -> Tensor:
    """den_j [C] = ones_j*(-log p_j) + zeros_j*(-log(1-p_j)); p is clamped, so finite."""
    return ones * -torch.log(p) + zeros * -torch.log1p(-p)


def _condition_weight_factor(weights: Optional[Tensor], size: int, like: Tensor) -> Tensor:
    """cw_j [C]: condition_weights[j] when finite and > 0, else 1."""
    if weights is None:
        return torch.ones_like(like)
    cw = _per_condition(weights, size, 1.0, like.device, like.dtype)
    return torch.where(torch.isfinite(cw) & (cw > 0), cw, torch.ones_like(cw))


def _reduce(loss: Tensor, w: Optional[Tensor], reduction: str) -> Tensor:
    """'none' -> w*loss [N]; 'sum' -> sum w*loss; 'mean' -> sum w*loss / max(sum w, 1),
    or the plain mean without weights."""
    if reduction == "none":
        return loss if w is None else loss * w
    if reduction == "sum":
        return loss.sum() if w is None else (loss * w).sum()
    if reduction == "mean":
        return loss.mean() if w is None else (loss * w).sum() / w.sum().clamp_min(1.0)
    raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")


# --------------------------------------------------------------------------- BCE / focal


def bce_loss(logits: Tensor, targets: Tensor, *, sample_weights: Optional[Tensor] = None) -> Tensor:
    """Mean BCE-with-logits: sum_i w_i*BCE_i / max(sum_i w_i, 1) with weights, mean_i BCE_i without.

    logits [N] or [N, 1], targets [N], sample_weights [N] -> scalar.
    """
    z, y, _, w = _flat_inputs(logits, targets, sample_weights=sample_weights)
    return _reduce(F.binary_cross_entropy_with_logits(z, y, reduction="none"), w, "mean")


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: Optional[float] = 0.25,
    gamma: float = 2.0,
    sample_weights: Optional[Tensor] = None,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss (Lin et al.) on logits.

    p = sigmoid(z), p_t = clamp(p*y + (1-p)*(1-y), e, 1-e), e = max(1e-12, finfo(dtype).eps),
    loss_i = max(1 - p_t, e)**gamma * BCE_i * (alpha*y + (1-alpha)*(1-y) if alpha is not None).
    The clamps keep loss and gradient finite at saturated logits even for gamma < 1.
    Reductions: 'mean' (weighted: / max(sum w, 1)), 'sum', 'none' ([N], times w).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")
    z, y, _, w = _flat_inputs(logits, targets, sample_weights=sample_weights)
    e = max(1e-12, torch.finfo(z.dtype).eps)
    p = torch.sigmoid(z)
    p_t = (p * y + (1 - p) * (1 - y)).clamp(e, 1 - e)
    loss = (1 - p_t).clamp_min(e).pow(gamma) * F.binary_cross_entropy_with_logits(
        z, y, reduction="none"
    )
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return _reduce(loss, w, reduction)


# --------------------------------------------------------------------------- Localized Entropy


@dataclass(frozen=True)
class LEConstants:
    """What LE needs per condition that does not change between batches (C conditions, one device).

    ``rate`` [C]: the supplied base rate, NaN where not usable (non-finite, outside [0, 1], or an id
    beyond len(base_rates)); ``supplied`` [C] bool; ``log_terms`` [2, C] = (-ln p_j, -ln(1 - p_j)) of
    p_j = clamp(rate_j, eps, 1 - eps) when EVERY rate is supplied (training's usual case: den_j is
    then one multiply-add per condition), else None (the empirical rate is needed per batch);
    ``weights`` [C]: cw_j; ``pick`` [2, 3]: maps the batch rows (count, weight, ones) to
    (ones, weight - ones) in one product (None: two row operations instead; building it costs a
    host-to-device copy).  Float tensors are in the stats dtype (float64; float32 on MPS).
    """
    size: int
    eps: float
    rate: Tensor
    supplied: Tensor
    log_terms: Optional[Tensor]
    weights: Tensor
    pick: Optional[Tensor]


def le_constants(base_rates: Optional[Tensor], condition_weights: Optional[Tensor], size: int, *,
                 device: torch.device, eps: float = 1e-12, precompute_logs: bool = True) -> LEConstants:
    """The :class:`LEConstants` of C = ``size`` conditions on ``device``.

    ``precompute_logs`` reads on the host whether every rate is supplied (one sync, at build time)
    and builds ``pick``; :func:`localized_entropy` builds its constants per call with it off, so that
    a call never synchronises.
    """
    dtype = stats_dtype(torch.device(device))
    rate, supplied = _supplied_rates(base_rates, size, device, dtype)
    log_terms = pick = None
    if precompute_logs:
        if bool(supplied.all()):
            p = rate.clamp(eps, 1.0 - eps)  # _condition_rate when every rate is supplied
            log_terms = torch.stack([-torch.log(p), -torch.log1p(-p)])
        pick = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, -1.0]], dtype=dtype, device=device)
    weights = _condition_weight_factor(condition_weights, size, rate)
    return LEConstants(size, float(eps), rate, supplied, log_terms, weights, pick)


def _le_factor(rows: Tensor, window: Optional[Tensor], k: LEConstants, norm_strength: float) -> Tensor:
    """factor_j [C] = cw_j / max(den_j, eps)**norm_strength.

    rows [3, C] (count, weight, ones) of the batch; window [2, C] (pos weight, neg weight) of the
    history, added to ones / zeros before the rate and the denominator.  ``pick @ rows`` is
    (ones, weight - ones) bit for bit (each output is one product by +-1 plus exact zeros); the
    clamp is for zeros, which soft labels can round slightly below 0 (ones >= 0 already).
    """
    oz = k.pick @ rows if k.pick is not None else torch.stack([rows[2], rows[1] - rows[2]])
    oz = oz.clamp_min(0.0)
    if window is not None:
        oz = oz + window
    if k.log_terms is not None:
        den = (oz * k.log_terms).sum(0)  # ones_j * (-ln p_j) + zeros_j * (-ln(1 - p_j))
    else:
        ones, zeros = oz.unbind(0)
        den = _entropy_den(ones, zeros, _condition_rate(ones, zeros, k.rate, k.supplied, k.eps))
    den = den.clamp_min(k.eps)
    if norm_strength != 1.0:  # x ** 1 is x: no kernel for the default
        den = den.pow(norm_strength)
    return k.weights / den


def _out_of_range(err: Exception) -> bool:
    """Whether a CPU indexing error says an index lies outside the indexed dimension."""
    text = str(err)
    return isinstance(err, IndexError) or "out of bounds" in text or "out of range" in text


def _checked_rows(y: Tensor, c: Tensor, w: Optional[Tensor], size: int, dtype) -> Tensor:
    """:func:`_condition_rows`, with a clear error for ids outside [0, C) (raised on CPU;
    on CUDA the scatter kernel asserts asynchronously instead)."""
    try:
        return _condition_rows(y, c, w, size, dtype)
    except (IndexError, RuntimeError) as err:
        if not _out_of_range(err):
            raise
        raise IndexError(f"localized_entropy: condition ids must lie in [0, {size}) "
                         f"(C = num_conditions or the inferred size)") from err


def _checked_stats(y: Tensor, c: Tensor, w: Optional[Tensor], size: int, dtype) -> Tensor:
    """[C, 3] columns (count, weight, ones): the transpose of :func:`_checked_rows`."""
    return _checked_rows(y, c, w, size, dtype).t()


def _call_constants(c: Tensor, base_rates: Optional[Tensor], condition_weights: Optional[Tensor],
                    history: Optional[WindowHistory], num_conditions: Optional[int], eps: float) -> LEConstants:
    """:func:`le_constants` for one :func:`localized_entropy` call given no prepared constants: C is
    ``num_conditions`` or inferred (:func:`_infer_num_conditions`, which reads max(c) on the host)."""
    size = num_conditions if num_conditions is not None else _infer_num_conditions(
        c, _numel(base_rates), _numel(condition_weights), None if history is None else history.num_conditions)
    return le_constants(base_rates, condition_weights, size, device=c.device, eps=eps, precompute_logs=False)


def localized_entropy(
    logits: Tensor,
    targets: Tensor,
    conditions: Tensor,
    *,
    base_rates: Optional[Tensor] = None,
    condition_weights: Optional[Tensor] = None,
    sample_weights: Optional[Tensor] = None,
    reduction: str = "mean",
    eps: float = 1e-12,
    norm_strength: float = 1.0,
    history: Optional[WindowHistory] = None,
    num_conditions: Optional[int] = None,
    constants: Optional[LEConstants] = None,
) -> Tensor:
    """Localized Entropy loss (module docstring has the maths).

    logits [N] or [N, 1], targets [N], conditions [N] int ids in [0, C), sample_weights [N];
    base_rates / condition_weights indexed by condition id.  A condition whose rate is not
    usable -- non-finite, outside [0, 1], or an id beyond len(base_rates) -- uses its
    empirical rate (batch + history); missing condition weights are 1.  The sum over
    conditions is computed as sum_i b_i * factor[c_i], identical to sum_j num_j * factor_j.

    num_conditions: C.  When None, C = max(len(base_rates), len(condition_weights),
    history.num_conditions, max(conditions) + 1); reading max(conditions) synchronises with
    the host.  With C given (and ids in [0, C), else IndexError) the loss, history update
    included, performs no host synchronisation.

    constants: :func:`le_constants` prepared once (an objective does); it then supplies C, the
    rates, the condition weights and eps, and those arguments are not read.

    history: e.g. :class:`le_ray.training.cross_batch.CrossBatchHistory`; its windows' positive /
    negative weight and b sums join ones_j, zeros_j and num_j of every condition present in
    the batch (W stays the batch's), then the batch is appended (the call mutates it).

    reduction: 'mean' -> the scalar above; 'sum' -> that times W.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"unknown reduction {reduction!r}; expected 'mean' or 'sum'")
    z, y, c, w = _flat_inputs(logits, targets, conditions, sample_weights)
    if constants is None:
        constants = _call_constants(c, base_rates, condition_weights, history, num_conditions, eps)
    rows = _checked_rows(y, c, w, constants.size, constants.rate.dtype)
    window = None if history is None else history.window_rows(constants.size)
    factor = _le_factor(rows, None if window is None else window[0].to(rows.dtype), constants, norm_strength)
    b = _bce_terms(z, y, w)
    total = (b * factor.to(z.dtype).index_select(0, c)).sum()
    count = rows[0]
    if window is not None:  # the windows' stored b join num_j of the conditions present, as constants
        total = total + (window[1].to(rows.dtype) * factor * (count > 0)).sum().to(z.dtype)
    big_w = w.sum() if w is not None else float(z.numel())
    loss = total / (big_w.clamp_min(1.0) if w is not None else max(big_w, 1.0))
    if history is not None:
        history.update(c, y, b.detach(), sample_weights=w, counts=count)
    return loss * big_w if reduction == "sum" else loss


#: Rows of :func:`le_stat_tensors`, the keys of :func:`per_condition_le_stats`.
LE_STAT_KEYS = ("count", "weight", "ones", "zeros", "numerator", "denominator", "base_rate")


@torch.no_grad()
def le_stat_tensors(logits: Tensor, targets: Tensor, conditions: Tensor, *, num_conditions: int,
                    base_rates: Optional[Tensor] = None, sample_weights: Optional[Tensor] = None,
                    eps: float = 1e-12) -> Tensor:
    """Per-condition LE diagnostics as one tensor [7, C] float64 on the logits' device, rows in
    :data:`LE_STAT_KEYS` order: count (samples), weight (sum w), ones (sum w*y), zeros (weight - ones),
    numerator (num_j = sum b_i), denominator (den_j before the eps clamp and the power), base_rate (p_j
    used, clamped; NaN for conditions absent from the batch whose rate was not supplied).  Nothing is
    read on the host (device evaluation stacks it with its other sums)."""
    z, y, c, w = _flat_inputs(logits, targets, conditions, sample_weights)
    stats = _checked_stats(y, c, w, num_conditions, stats_dtype(z.device))
    num = stats.new_zeros(num_conditions).index_add_(0, c, _bce_terms(z, y, w).to(stats.dtype))
    ones = stats[:, 2]
    zeros = (stats[:, 1] - ones).clamp_min(0.0)
    supplied_rate, supplied = _supplied_rates(base_rates, num_conditions, stats.device, stats.dtype)
    rate = _condition_rate(ones, zeros, supplied_rate, supplied, eps)
    den = _entropy_den(ones, zeros, rate)
    rate = torch.where(supplied | (stats[:, 0] > 0), rate, torch.full_like(rate, math.nan))
    return torch.stack([stats[:, 0], stats[:, 1], ones, zeros, num, den, rate]).to(torch.float64)


def per_condition_le_stats(
    logits: Tensor,
    targets: Tensor,
    conditions: Tensor,
    *,
    base_rates: Optional[Tensor] = None,
    sample_weights: Optional[Tensor] = None,
    eps: float = 1e-12,
    num_conditions: Optional[int] = None,
) -> dict[str, np.ndarray]:
    """:func:`le_stat_tensors` as float64 numpy arrays of length C keyed by :data:`LE_STAT_KEYS`.
    C = num_conditions, else inferred as in :func:`localized_entropy`."""
    _, _, c, _ = _flat_inputs(logits, targets, conditions, sample_weights)
    size = num_conditions if num_conditions is not None else _infer_num_conditions(c, _numel(base_rates))
    rows = le_stat_tensors(logits, targets, conditions, num_conditions=size, base_rates=base_rates,
                           sample_weights=sample_weights, eps=eps).cpu().numpy()
    return dict(zip(LE_STAT_KEYS, rows))
