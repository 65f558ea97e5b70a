"""Image-level classification metrics used by the WSOL papers.

* top-k accuracy / error, the ILSVRC classification metric (Zhou et al. 2016, §3 and Table 1;
  Qiu et al., §IV-B "Classification");
* accuracy, precision and recall at probability 0.5 (Moreaux et al. 2018, §4: "we only consider a
  label to be true if the probability of its prediction is over 50% (as in the Keras implementation)");
* average precision of a ranked list and its mean over classes (Moreaux et al. 2018, Table 3 "MaP";
  Qiu et al., Table I, PASCAL VOC 2007 classification AP), in three flavours:

  - ``"area"``: non-interpolated area under the precision-recall curve,
    ``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct score thresholds — exactly scikit-learn's
    ``average_precision_score``;
  - ``"voc07"``: the PASCAL VOC 2007 11-point interpolated AP;
  - ``"voc"``: the VOC 2010+ all-point interpolated AP (area under the monotone precision envelope).

All inputs are numpy array-likes; every function validates its input and raises ``ValueError`` with
the argument name on bad shapes, NaN/inf scores or out-of-range labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from wsol.metrics.detection import voc_ap

__all__ = [
    "APMethod",
    "MeanAPResult",
    "PrecisionRecall",
    "accuracy",
    "average_precision",
    "mean_average_precision",
    "precision_recall",
    "topk_accuracy",
    "topk_error",
]

APMethod = Literal["area", "voc07", "voc"]


# ----------------------------------------------------------------------------- validation helpers
def _finite_float(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {idx})")
    return arr


def _scores_2d(scores: npt.ArrayLike, name: str = "scores") -> np.ndarray:
    arr = _finite_float(scores, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N, C), got {arr.shape}")
    return arr


def _int_labels(labels: npt.ArrayLike, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the scores, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise ValueError(f"{name} must contain integer class indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {int(arr[i])} is outside [0, {num_classes})")
    return arr.astype(np.int64)


def _binary(x: npt.ArrayLike, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype != bool:
        ok = np.isin(arr, (0, 1))
        if not ok.all():
            idx = tuple(int(i) for i in np.argwhere(~ok)[0])
            raise ValueError(f"{name} must be binary (0/1 or bool); {name}{list(idx)} = {arr[idx]!r}")
        arr = arr.astype(bool)
    return arr


# ----------------------------------------------------------------------------- top-k / accuracy
def _topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    # Stable sort on -score: among tied scores the lower class index ranks first (deterministic).
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1)


def topk_accuracy(
    scores: npt.ArrayLike, labels: npt.ArrayLike, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Top-k classification accuracy, the ILSVRC metric (Zhou et al. 2016, §3/§4; Qiu et al. §IV-B).

    ``acc@k = (1/N) Σ_i 1[y_i ∈ topk(s_i)]`` where ``topk(s_i)`` are the ``k`` classes of highest score.
    Ties are broken deterministically by a stable sort: among equal scores the lower class index ranks
    first.

    Args:
        scores: ``(N, C)`` class scores (logits or probabilities; only the ranking matters).
        labels: ``(N,)`` integer ground-truth classes in ``[0, C)``.
        ks: the values of ``k`` (each ``1 <= k <= C``).

    Returns:
        ``{k: accuracy}`` with accuracies in ``[0, 1]``.

    Raises:
        ValueError: bad shapes, NaN/inf scores, labels out of range, or ``k`` outside ``[1, C]``.
    """
    s = _scores_2d(scores)
    y = _int_labels(labels, s.shape[0], s.shape[1])
    out: dict[int, float] = {}
    for k in ks:
        if not 1 <= int(k) <= s.shape[1]:
            raise ValueError(f"ks contains k={k}, which must lie in [1, C={s.shape[1]}]")
        out[int(k)] = float(_topk_hits(s, y, int(k)).mean())
    return out


def topk_error(scores: npt.ArrayLike, labels: npt.ArrayLike, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k classification error ``1 − acc@k`` (the numbers of Zhou et al. 2016, Table 1).

    See :func:`topk_accuracy` for arguments and tie handling.
    """
    return {k: 1.0 - v for k, v in topk_accuracy(scores, labels, ks).items()}


def accuracy(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Single-label accuracy ``(1/N) Σ_i 1[argmax_c s_ic = y_i]`` (Moreaux et al. 2018, §4, Table 2).

    Equal to top-1 accuracy; ties in ``argmax`` go to the lower class index.

    Args:
        scores: ``(N, C)`` class scores.
        labels: ``(N,)`` integer ground-truth classes.
    """
    return topk_accuracy(scores, labels, ks=(1,))[1]


# ----------------------------------------------------------------------------- precision / recall
@dataclass(frozen=True)
class PrecisionRecall:
    """Precision and recall of thresholded predictions.

    Attributes:
        precision: ``(C,)`` per-class precision ``TP_c / (TP_c + FP_c)``.
        recall: ``(C,)`` per-class recall ``TP_c / (TP_c + FN_c)``.
        macro_precision: mean of ``precision`` over the classes where it is defined (``nanmean``).
        macro_recall: mean of ``recall`` over the classes where it is defined.
        micro_precision: ``Σ_c TP_c / Σ_c (TP_c + FP_c)`` (the Keras 1 ``precision`` metric).
        micro_recall: ``Σ_c TP_c / Σ_c (TP_c + FN_c)`` (the Keras 1 ``recall`` metric).
        tp: ``(C,)`` true-positive counts.
        fp: ``(C,)`` false-positive counts.
        fn: ``(C,)`` false-negative counts.
    """

    precision: np.ndarray
    recall: np.ndarray
    macro_precision: float
    macro_recall: float
    micro_precision: float
    micro_recall: float
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray


def _ratio(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(x[~np.isnan(x)].mean()) if (~np.isnan(x)).any() else float("nan")


def precision_recall(
    probs: npt.ArrayLike,
    targets: npt.ArrayLike,
    threshold: float = 0.5,
    zero_division: float = float("nan"),
) -> PrecisionRecall:
    """Precision and recall at a probability threshold (Moreaux et al. 2018, §4, Tables 2–3).

    A label is predicted positive iff its probability is *strictly* over ``threshold`` ("over 50%"; this
    also matches Keras' ``round``, which sends 0.5 to 0). Per class ``c``:
    ``P_c = TP_c / (TP_c + FP_c)``, ``R_c = TP_c / (TP_c + FN_c)``; macro = mean over classes, micro =
    pooled counts (the Keras 1 metric computed on the whole set).

    Three input layouts are accepted:

    * binary: ``probs (N,)`` and ``targets (N,)`` in ``{0, 1}`` (one class);
    * single-label multi-class: ``probs (N, C)`` and integer ``targets (N,)`` (converted to one-hot);
    * multi-label: ``probs (N, C)`` and multi-hot ``targets (N, C)``.

    Args:
        probs: probabilities (any real scores are accepted; only the comparison with ``threshold``
            matters).
        targets: ground truth in one of the layouts above.
        threshold: decision threshold.
        zero_division: value for an undefined ratio (no predicted positives for precision, no positives
            for recall). The default NaN keeps such classes out of the macro averages.

    Returns:
        A :class:`PrecisionRecall`.

    Raises:
        ValueError: mismatched shapes, NaN/inf probabilities, non-binary targets.
    """
    p = _finite_float(probs, "probs")
    t = np.asarray(targets)
    if p.ndim == 1:
        truth = _binary(t, p.shape, "targets")[:, None]
        p = p[:, None]
    elif p.ndim == 2 and t.ndim == 1:
        labels = _int_labels(t, p.shape[0], p.shape[1], "targets")
        truth = np.zeros(p.shape, dtype=bool)
        truth[np.arange(p.shape[0]), labels] = True
    elif p.ndim == 2:
        truth = _binary(t, p.shape, "targets")
    else:
        raise ValueError(f"probs must have shape (N,) or (N, C), got {p.shape}")
    pred = p > threshold
    tp = (pred & truth).sum(axis=0)
    fp = (pred & ~truth).sum(axis=0)
    fn = (~pred & truth).sum(axis=0)
    precision = _ratio(tp, tp + fp, zero_division)
    recall = _ratio(tp, tp + fn, zero_division)
    micro_p = _ratio(np.array(tp.sum()), np.array((tp + fp).sum()), zero_division)
    micro_r = _ratio(np.array(tp.sum()), np.array((tp + fn).sum()), zero_division)
    return PrecisionRecall(
        precision=precision,
        recall=recall,
        macro_precision=_nanmean(precision),
        macro_recall=_nanmean(recall),
        micro_precision=float(micro_p),
        micro_recall=float(micro_r),
        tp=tp,
        fp=fp,
        fn=fn,
    )


# ----------------------------------------------------------------------------- average precision
def average_precision(
    scores: npt.ArrayLike,
    positives: npt.ArrayLike,
    *,
    num_positives: int | None = None,
    method: APMethod = "area",
) -> float:
    """Average precision of one class from a ranked list.

    Items are ranked by decreasing score. With ``TP_n``/``FP_n`` the counts among the first ``n`` items,
    ``P_n = TP_n / n`` and ``R_n = TP_n / N_pos``:

    * ``method="area"`` (default): ``AP = Σ_n (R_n − R_{n−1}) P_n`` where ``n`` runs over the
      *distinct* score thresholds (tied items enter together). This is exactly scikit-learn's
      ``average_precision_score`` (non-interpolated area under the PR curve).
    * ``method="voc07"``: PASCAL VOC 2007 11-point AP, ``AP = (1/11) Σ_{t∈{0,0.1,…,1}} max_{R_n≥t} P_n``
      (see :func:`wsol.metrics.detection.voc_ap`). Items are taken one by one (stable order on ties),
      as the VOC devkit does.
    * ``method="voc"``: VOC 2010+ all-point AP, the area under the monotone envelope
      ``P̂(r) = max_{R_n ≥ r} P_n``.

    ``num_positives`` sets ``N_pos`` explicitly, for protocols where some positives can never be
    retrieved (e.g. pin-pointing: a positive image whose point misses the object still counts in the
    recall denominator). By default ``N_pos = Σ positives``.

    Args:
        scores: ``(N,)`` confidences.
        positives: ``(N,)`` binary relevance of each item.
        num_positives: recall denominator; must be ``>= Σ positives``.
        method: ``"area"``, ``"voc07"`` or ``"voc"``.

    Returns:
        AP in ``[0, 1]``; NaN when there is no positive (AP undefined) — callers averaging over classes
        should skip it (as :func:`mean_average_precision` does).

    Raises:
        ValueError: shape mismatch, empty input, NaN/inf scores, non-binary ``positives``, bad
            ``num_positives`` or unknown ``method``.
    """
    s = _finite_float(scores, "scores")
    if s.ndim != 1:
        raise ValueError(f"scores must have shape (N,), got {s.shape}")
    y = _binary(positives, s.shape, "positives")
    n_hits = int(y.sum())
    n_pos = n_hits if num_positives is None else int(num_positives)
    if n_pos < n_hits:
        raise ValueError(f"num_positives={num_positives} is smaller than the number of positives ({n_hits})")
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    if method == "area":
        # last index of each run of tied scores, as sklearn's _binary_clf_curve
        idx = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
        tps = np.cumsum(y)[idx].astype(np.float64)
        precision = tps / (idx + 1.0)
        recall = tps / n_pos
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    if method in ("voc07", "voc"):
        tps = np.cumsum(y).astype(np.float64)
        precision = tps / np.arange(1.0, s.size + 1.0)
        recall = tps / n_pos
        return voc_ap(recall, precision, use_07_metric=method == "voc07")
    raise ValueError(f"method must be 'area', 'voc07' or 'voc', got {method!r}")


@dataclass(frozen=True)
class MeanAPResult:
    """Per-class AP and their mean.

    Attributes:
        ap: ``(C,)`` AP per class; NaN for classes without any positive (skipped).
        mean_ap: mean of the defined entries of ``ap``.
        skipped: indices of the classes skipped because they have no positive example.
    """

    ap: np.ndarray
    mean_ap: float
    skipped: tuple[int, ...]


def mean_average_precision(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    method: APMethod = "area",
    ignore: npt.ArrayLike | None = None,
) -> MeanAPResult:
    """Mean over classes of the per-class AP (Moreaux et al. 2018 "MaP"; VOC 2007 classification mAP).

    ``mAP = (1/|C'|) Σ_{c∈C'} AP_c`` where ``C'`` are the classes with at least one positive; classes
    without positives have an undefined AP and are *skipped* (reported in ``skipped``, AP NaN), as
    scikit-learn's ``average_precision_score(average="macro")`` would otherwise silently score them.

    Args:
        scores: ``(N, C)`` class confidences.
        targets: ``(N, C)`` multi-hot ground truth.
        method: AP flavour, see :func:`average_precision` (``"voc07"`` for the VOC 2007 protocol).
        ignore: optional ``(N, C)`` boolean mask of entries to leave out of the ranking (the VOC
            "difficult" image-class pairs, label 0 in the devkit).

    Returns:
        A :class:`MeanAPResult`; ``mean_ap`` is NaN if no class has a positive.

    Raises:
        ValueError: shape mismatch, NaN/inf scores, non-binary targets.
    """
    s = _scores_2d(scores)
    t = _binary(targets, s.shape, "targets")
    ign = np.zeros(s.shape, dtype=bool) if ignore is None else _binary(ignore, s.shape, "ignore")
    ap = np.full(s.shape[1], np.nan)
    for c in range(s.shape[1]):
        keep = ~ign[:, c]
        if t[keep, c].any():
            ap[c] = average_precision(s[keep, c], t[keep, c], method=method)
    skipped = tuple(int(c) for c in np.flatnonzero(np.isnan(ap)))
    return MeanAPResult(ap=ap, mean_ap=_nanmean(ap), skipped=skipped)
