"""Loading weights from local files (never a download) and self-describing model checkpoints.

Every file goes through ``torch.load(path, map_location="cpu", weights_only=True)``: only tensors and plain
containers are unpickled, so a file holding arbitrary pickled objects (which could run code) is refused with
a ``ValueError``.

Three kinds of weights files are understood by :func:`load_weights`:

* a **timm / torchvision state dict** of the *uncut* architecture (optionally under ``"state_dict"``, keys
  optionally prefixed ``module.``): its tensors are mapped onto the cut backbone through the backbone's
  :class:`~wsol.models.backbones.SourceKeys` — keys of removed layers are *skipped*, the layers the
  surgery added (and the CAM head) stay at their initialization (*new*); a first convolution with another
  number of input channels is adapted with ``timm.models.adapt_input_conv``;
* a **trainer checkpoint** (``last.pt`` / ``best.pt`` of :class:`wsol.trainer.Trainer`: a dict with
  ``"model"`` = the CAMNet state dict, ``"config"``, ``"optimizer"``, ...);
* a **model checkpoint** written by :func:`save_model_checkpoint`: ``{"format": "wsol-model",
  "format_version": 1, "model_spec": {...}, "model": state_dict}``, where ``model_spec`` records how to
  rebuild the model (``name``, ``head``, ``num_classes``, ``pooling``, ``in_chans``, ``backbone_kwargs``,
  ``head_kwargs``, ``class_names``, ``pretrained_cfg``), so :func:`load_model` needs nothing else.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from wsol.heads import CAMLayerHead, GAPmHead, _CAMHead
from wsol.models.backbones import SourceKeys
from wsol.models.base import CAMNet, create_model

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "LoadReport",
    "full_model_spec",
    "load_model",
    "load_weights",
    "read_weights_file",
    "save_model_checkpoint",
]

MODEL_FORMAT = "wsol-model"
MODEL_FORMAT_VERSION = 1
_SPEC_FIELDS = ("name", "head", "num_classes", "pooling", "in_chans", "backbone_kwargs", "head_kwargs")
PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def read_weights_file(path: PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Raises:
        ValueError: missing file; a file with arbitrary pickled objects (refused as unsafe by
            ``weights_only=True``); a corrupt / non-torch file.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"weights file {str(p)!r} does not exist")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if match:
            raise ValueError(
                f"refusing to load {str(p)!r}: it contains a pickled {match.group(1)} object, not only tensors and "
                "plain containers; torch.load(weights_only=True) rejects it as unsafe (unpickling it could run "
                "arbitrary code). Re-save only the state dict."
            ) from None
        detail = " ".join(re.findall(r"(?:Unsupported|WeightsUnpickler)[^\n]*\S", text)) or text.strip()[:200]
        raise ValueError(
            f"cannot read weights file {str(p)!r}: not a torch file, corrupt, or using pickle features that "
            f"torch.load(weights_only=True) refuses as unsafe ({detail})"
        ) from None
    except Exception as err:
        raise ValueError(f"cannot read weights file {str(p)!r} (corrupt or not a torch file): {err}") from err


def _as_state_dict(obj: Any, where: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{where} is not a state dict (a non-empty mapping of names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{where} is not a state dict: entry {bad[0]!r} is not a named tensor")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _unwrap(obj: Any, where: str) -> tuple[dict[str, Tensor], dict[str, Any] | None, bool]:
    """(state dict, model_spec or None, is a wsol checkpoint)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        spec = obj.get("model_spec")
        spec = dict(spec) if isinstance(spec, Mapping) else None
        return _as_state_dict(obj["model"], f"{where}['model']"), spec, True
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        return _as_state_dict(obj["state_dict"], f"{where}['state_dict']"), None, False
    return _as_state_dict(obj, where), None, False


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------


def _preview(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


@dataclass
class LoadReport:
    """What :func:`load_weights` did, key by key.

    Attributes:
        source: the file (or ``"<state dict>"``).
        kind: ``"checkpoint"`` (a whole wsol model) or ``"backbone"`` (a timm / torchvision state dict).
        loaded: model keys that received a tensor.
        missing: model keys the source should have provided but did not.
        unexpected: source keys that match nothing and belong to no removed layer.
        skipped: source keys of layers the surgery removed (expected to be unused).
        new: model keys left at their initialization on purpose (added layers, the CAM head).
        adapted: model keys filled from a tensor of another shape (first conv, other ``in_chans``).
    """

    source: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """No missing and no unexpected key."""
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        lines = [f"{self.source} ({self.kind}): {len(self.loaded)} tensors loaded"]
        for name in ("missing", "unexpected", "skipped", "new", "adapted"):
            keys = getattr(self, name)
            if keys:
                lines.append(f"  {name} ({len(keys)}): {_preview(keys)}")
        return "\n".join(lines)


def _finish(report: LoadReport, strict: bool) -> None:
    if report.complete:
        return
    if strict:
        raise ValueError(
            f"weights do not match the model (strict=True):\n{report}\n"
            "missing = model tensors the file lacks; unexpected = file tensors that match no layer of the model"
        )
    warnings.warn(f"partial weight loading:\n{report}", stacklevel=3)


def _shape_error(where: str, mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]]) -> ValueError:
    text = "; ".join(f"{m} <- {s}: file {tuple(a)} vs model {tuple(b)}" for m, s, a, b in mismatched[:6])
    more = f" ... ({len(mismatched)} in all)" if len(mismatched) > 6 else ""
    return ValueError(f"{where}: tensor shapes differ from the model: {text}{more}")


# ----------------------------------------------------------------------------------------------
# whole-model checkpoints
# ----------------------------------------------------------------------------------------------


def _classes_from_head(head: nn.Module, state: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> int | None:
    """Number of classes of the checkpoint's head, read from the first head tensor whose shape differs."""
    for key, t in state.items():
        if not key.startswith("head.") or key not in own or own[key].shape == t.shape or t.ndim == 0:
            continue
        sub, rows = key[len("head.") :], int(t.shape[0])
        if sub in ("scale", "bias") or sub.startswith("fc."):
            return rows
        if isinstance(head, GAPmHead) and sub.startswith("conv."):
            return rows // head.m if rows % head.m == 0 else None
        if isinstance(head, CAMLayerHead) and sub.startswith("cam."):
            return rows - head.pool.extra_channels
    return None


def _load_exact(module: nn.Module, state: dict[str, Tensor], strict: bool, where: str) -> LoadReport:
    """Same key names on both sides (a wsol checkpoint): shapes must agree, missing/unexpected per ``strict``."""
    own = module.state_dict()
    mismatched = [(k, k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own]
    mismatched = [m for m in mismatched if m[2] != m[3]]
    if mismatched:
        raise _shape_error(where, mismatched)
    report = LoadReport(where, "checkpoint")
    report.loaded = [k for k in own if k in state]
    report.missing = [k for k in own if k not in state]
    report.unexpected = [k for k in state if k not in own]
    _finish(report, strict)
    module.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return report


def _load_full(
    model: CAMNet, state: dict[str, Tensor], spec: dict[str, Any] | None, strict: bool, where: str
) -> LoadReport:
    own = model.state_dict()
    n_ckpt = spec.get("num_classes") if spec else None
    if n_ckpt is None and isinstance(model.head, _CAMHead):
        n_ckpt = _classes_from_head(model.head, state, own)
    if n_ckpt is not None and n_ckpt != model.num_classes:
        n_model = model.num_classes
        raise ValueError(f"{where} holds a model with {n_ckpt} classes, but the model has num_classes={n_model}")
    report = _load_exact(model, state, strict, where)
    if spec:
        names = spec.get("class_names")
        if names and len(names) == model.num_classes:
            model.class_names = [str(n) for n in names]
        if spec.get("pretrained_cfg"):
            model.pretrained_cfg = dict(spec["pretrained_cfg"])
    return report


# ----------------------------------------------------------------------------------------------
# backbone state dicts (timm / torchvision)
# ----------------------------------------------------------------------------------------------


def _first_conv_weight_key(module: nn.Module) -> str | None:
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{name}.weight" if name else "weight"
    return None


def _load_backbone(target: nn.Module, state: dict[str, Tensor], strict: bool, where: str, prefix: str) -> LoadReport:
    from timm.models import adapt_input_conv

    keys: SourceKeys = getattr(target, "source_keys", None) or SourceKeys()
    own = target.state_dict()
    first_conv = _first_conv_weight_key(target)
    report = LoadReport(where, "backbone")
    used: set[str] = set()
    new_state: dict[str, Tensor] = {}
    mismatched = []
    for k, t in own.items():
        src_key = keys.source_key(k)
        if src_key is None:
            (report.new if keys.is_new(k) else report.missing).append(prefix + k)
            continue
        if src_key not in state:
            if not k.endswith("num_batches_tracked"):  # absent from older torchvision files; harmless
                report.missing.append(prefix + k)
            continue
        src = state[src_key]
        used.add(src_key)
        if src.shape != t.shape:
            same_but_in = src.ndim == 4 and src.shape[0] == t.shape[0] and src.shape[2:] == t.shape[2:]
            if k == first_conv and same_but_in:
                src = adapt_input_conv(int(t.shape[1]), src)
                report.adapted.append(prefix + k)
            else:
                mismatched.append((prefix + k, src_key, tuple(src.shape), tuple(t.shape)))
                continue
        new_state[k] = src
        report.loaded.append(prefix + k)
    if mismatched:
        raise _shape_error(where, mismatched)
    rest = [s for s in state if s not in used]
    report.skipped = [s for s in rest if keys.is_removed(s)]
    report.unexpected = [s for s in rest if not keys.is_removed(s)]
    if not report.loaded:
        raise ValueError(
            f"{where}: no tensor matches the backbone ({type(target).__name__}); wrong architecture? "
            f"file keys: {_preview(sorted(state))}"
        )
    _finish(report, strict)
    target.load_state_dict(new_state, strict=False)
    return report


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def load_weights(model: nn.Module, source: PathLike | Mapping[str, Any], strict: bool = True) -> LoadReport:
    """Load local weights into ``model`` (a :class:`CAMNet` or a bare backbone) and report what happened.

    ``source`` is a path (read with :func:`read_weights_file`) or an in-memory mapping. A wsol checkpoint
    (``{"model": state_dict, ...}``, trainer or :func:`save_model_checkpoint`) or a CAMNet state dict
    (keys ``backbone.*`` / ``head.*``) loads the whole model; anything else is taken as the uncut model's
    timm / torchvision state dict and mapped onto the backbone (see the module docstring); the head is then
    left untouched and listed under ``new``.

    Args:
        model: the model to fill (in place).
        source: file path or mapping.
        strict: raise on missing or unexpected keys (skipped and new keys are expected and never raise);
            with ``strict=False`` they only warn.

    Returns:
        :class:`LoadReport`.

    Raises:
        ValueError: unreadable / unsafe file; not a state dict; checkpoint with another number of classes
            (both numbers are named); tensor shapes that differ; with ``strict``, missing / unexpected keys.
    """
    where = str(source) if isinstance(source, str | os.PathLike) else "<state dict>"
    obj = read_weights_file(source) if isinstance(source, str | os.PathLike) else source
    state, spec, is_checkpoint = _unwrap(obj, where)
    camnet_keys = all(k.startswith(("backbone.", "head.")) for k in state) and any(k.startswith("head.") for k in state)
    whole = is_checkpoint or camnet_keys
    if isinstance(model, CAMNet):
        if whole:
            return _load_full(model, state, spec, strict, where)
        report = _load_backbone(model.backbone, state, strict, where, "backbone.")
        report.new.extend(f"head.{k}" for k in model.head.state_dict())
        return report
    if whole:  # a bare backbone filled from a whole-model checkpoint: take its backbone part
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        if not state:
            raise ValueError(f"{where} holds no backbone.* tensors")
        return _load_exact(model, state, strict, where)
    return _load_backbone(model, state, strict, where, "")


def _plain(value: Any, where: str) -> None:
    """Only what ``torch.load(weights_only=True)`` reads back (and JSON-like): None/bool/int/float/str/containers."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"model_spec: {where} has a non-string key {k!r}")
            _plain(v, f"{where}[{k!r}]")
        return
    raise ValueError(
        f"model_spec: {where} is a {type(value).__name__}, not plain python; build the model with names "
        "(e.g. pooling='spam' rather than a pooling module) so that it can be rebuilt"
    )


def save_model_checkpoint(model: CAMNet, path: PathLike, class_names: list[str] | None = None) -> None:
    """Atomically write ``{"format": "wsol-model", "format_version": 1, "model_spec": ..., "model": state}``.

    ``model_spec`` is ``model.model_spec`` (set by :func:`~wsol.models.base.create_model`) plus
    ``class_names`` (argument, else ``model.class_names``) and ``pretrained_cfg``; :func:`load_model`
    rebuilds the model from it. Written with :func:`wsol.trainer.atomic_torch_save`.

    Raises:
        ValueError: the model has no ``model_spec`` (not built by ``create_model``), non-plain spec values,
            or ``class_names`` of the wrong length.
    """
    from wsol.trainer import atomic_torch_save

    full = full_model_spec(model, class_names)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "model_spec": full, "model": state}
    atomic_torch_save(payload, path)


def full_model_spec(model: nn.Module, class_names: list[str] | None = None) -> dict[str, Any]:
    """The plain-python ``model_spec`` that :func:`load_model` rebuilds ``model`` from.

    ``model.model_spec`` (set by :func:`~wsol.models.base.create_model`) plus ``class_names`` (argument,
    else ``model.class_names``) and ``pretrained_cfg``. The trainer stores it in its checkpoints too.

    Raises:
        ValueError: no ``model_spec`` (not built by ``create_model``), non-plain values, or ``class_names``
            of the wrong length.
    """
    spec = getattr(model, "model_spec", None)
    if not isinstance(model, CAMNet) or not spec:
        raise ValueError("save_model_checkpoint: model has no model_spec (build it with wsol.create_model)")
    names = list(class_names) if class_names is not None else getattr(model, "class_names", None)
    if names is not None and len(names) != model.num_classes:
        raise ValueError(f"class_names has {len(names)} entries, the model has num_classes={model.num_classes}")
    full = {k: spec[k] for k in _SPEC_FIELDS}
    full["class_names"] = [str(n) for n in names] if names is not None else None
    full["pretrained_cfg"] = dict(getattr(model, "pretrained_cfg", {}) or {})
    _plain(full, "model_spec")
    return full


def _model_from_checkpoint(obj: Any, where: str, num_classes: int | None) -> CAMNet:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model"), Mapping):
        raise ValueError(f"{where} is not a wsol checkpoint (no 'model' state dict)")
    spec = obj.get("model_spec")
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"{where} has no model_spec (e.g. a trainer checkpoint): build the model with "
            "wsol.create_model(...) and call wsol.models.loading.load_weights(model, path)"
        )
    lacking = [f for f in _SPEC_FIELDS if f not in spec]
    if lacking:
        raise ValueError(f"{where}: model_spec lacks {lacking}")
    if num_classes is not None and num_classes != spec["num_classes"]:
        raise ValueError(f"{where} holds a model with {spec['num_classes']} classes, but num_classes={num_classes}")
    model = create_model(
        spec["name"],
        head=spec["head"],
        num_classes=spec["num_classes"],
        pooling=spec["pooling"],
        in_chans=spec["in_chans"],
        backbone_kwargs=dict(spec["backbone_kwargs"]),
        **dict(spec["head_kwargs"]),
    )
    _load_full(model, _as_state_dict(obj["model"], f"{where}['model']"), dict(spec), True, where)
    return model


def load_model(
    spec: str | os.PathLike[str], num_classes: int | None = None, device: str | torch.device = "cpu"
) -> CAMNet:
    """A ready model (eval mode) from a pretrained name or a :func:`save_model_checkpoint` file.

    Args:
        spec: a name of :func:`wsol.models.pretrained.list_pretrained` (e.g. ``"efficientnet_lite0"``)
            or the path of a model checkpoint.
        num_classes: for a pretrained name, ``None`` keeps its classes and another number replaces the
            classifier with a freshly initialized one (fine-tuning); for a checkpoint it must match the
            checkpoint (``None`` = accept it).
        device: where to put the model.

    Raises:
        ValueError: unknown name / missing file (the message lists the valid names), unsafe or corrupt
            file, checkpoint without ``model_spec``, class-count mismatch (both numbers named).
    """
    from wsol.models.pretrained import get_pretrained, list_pretrained

    if isinstance(spec, str) and spec in list_pretrained():
        model = get_pretrained(spec)(pretrained=True, num_classes=num_classes)
    elif isinstance(spec, str | os.PathLike) and Path(spec).is_file():
        model = _model_from_checkpoint(read_weights_file(spec), str(spec), num_classes)
    else:
        raise ValueError(
            f"unknown model {str(spec)!r}: neither a pretrained name (valid names: {', '.join(list_pretrained())}) "
            "nor an existing checkpoint file"
        )
    return model.to(torch.device(device)).eval()
