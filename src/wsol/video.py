"""Real-time CAM localization on video: one forward pass per frame gives class scores, CAMs and boxes.

Per frame (:class:`VideoLocalizer`, :func:`process_video`)::

    decode ─▶ preprocess ─▶ forward (logits, CAMs) ─▶ [EMA] ─▶ top-k ─▶ boxes in frame pixels ─▶ draw ─▶ encode

The middle of the pipeline is :class:`wsol.localizer.Localizer` (the engine of ``wsol localize``), so a frame
gets the classes and boxes a still image would (without smoothing; equal up to float rounding):

* **preprocess** — BGR → RGB, the *whole* frame resized to ``size × size`` (no centre crop: a crop would
  hide the frame's borders), normalized with the model's ``pretrained_cfg`` mean/std.
* **forward** — ``logits, cams = model(x)`` through :class:`StreamingCAMNet`: the CAMs come from the same
  pass as the scores; for Zhou GAP → FC heads only the top-k maps are formed (exact shortcut).
* **temporal smoothing** (optional, :class:`CamSmoother`) — Moreaux et al. 2018 §5 propose, as future work,
  "to generate a prediction based on a coherence of several consecutive frames rather than on a single
  frame". We implement the simplest such coherence, an exponential moving average of the maps *and* logits
  applied **before** box extraction:

  .. math:: \\bar M_t = \\alpha \\bar M_{t-1} + (1 - \\alpha) M_t, \\qquad \\bar M_0 = M_0,

  i.e. :math:`\\bar M_t = (1-\\alpha)\\sum_{j<t} \\alpha^j M_{t-j} + \\alpha^t M_0` (weights summing to 1,
  an effective window of about :math:`1/(1-\\alpha)` frames). ``α = 0`` switches smoothing off. For a Zhou
  GAP→FC head the logits are affine in the maps (:math:`S_c = \\mathrm{mean}(M_c) + b_c`), so the smoothed
  logits are exactly the logits of the smoothed maps; they choose the top-k classes.
* **boxes** — the Localizer's rule: top-k maps upsampled (bilinear) to the input size, min-max normalized, a
  strategy of :mod:`wsol.localize` (default ``zhou``: largest component above 20 % of the normalized map,
  Zhou et al. 2016 §3.2), boxes mapped back to frame pixels, ``[x0, y0, x1, y1]`` inclusive.
* **draw / encode** — optional heatmap blend of the top-1 map, one box + label per class, the running fps;
  written with ``cv2.VideoWriter`` (``mp4v``).

Frames can be grouped into small batches for the forward pass (``batch_size``): smoothing and drawing stay
in frame order, at the cost of ``batch − 1`` frames of latency (on our CPU it did not raise throughput, see
``benchmarks/README.md``).
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.heads import CAMOutput, ZhouHead
from wsol.localize import MapStats, receptive_field_chain
from wsol.localizer import Prediction, parse_device, short_name
from wsol.models.loading import load_model
from wsol.pooling import GlobalAvgPool

__all__ = [
    "STAGES",
    "CamSmoother",
    "StageTimer",
    "StreamingCAMNet",
    "VideoLocalizer",
    "VideoStats",
    "check_output_path",
    "draw_prediction",
    "open_capture",
    "open_writer",
    "parse_source",
    "process_video",
    "read_frames",
    "write_synthetic_video",
]

#: Pipeline stages timed by :class:`StageTimer`, in order.
STAGES = ("decode", "preprocess", "forward", "boxes", "draw", "encode")

#: BGR colours of the boxes of the top-1, top-2, ... classes (cycled).
_COLORS = ((0, 0, 255), (0, 200, 0), (255, 128, 0), (0, 200, 255), (255, 0, 255))


# ----------------------------------------------------------------------------------------------
# Input / output
# ----------------------------------------------------------------------------------------------


def parse_source(text: str | int | os.PathLike[str]) -> str | int:
    """``"0"`` → camera index ``0``; anything else is a video file path (returned as ``str``).

    A ``str`` made only of digits is always a camera index (OpenCV ``VideoCapture(int)``); a ``Path`` is
    always a file (``Path("0")`` is the file named ``0``).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if isinstance(text, os.PathLike):
        return os.fspath(text)
    s = str(text)
    return int(s) if s.strip().isdigit() else s


def open_capture(source: str | int | os.PathLike[str]) -> cv2.VideoCapture:
    """Open a video file or a camera with OpenCV, with clear errors.

    Raises:
        ValueError: missing file, a folder, a file OpenCV cannot decode as a video, or a camera index
            that does not open.
    """
    src = parse_source(source)
    if isinstance(src, int):
        if src < 0:
            raise ValueError(f"camera index must be >= 0, got {src}")
        cap = _quiet(lambda: cv2.VideoCapture(src))
        if not cap.isOpened():
            raise ValueError(f"cannot open camera index {src} (no such camera, or OpenCV has no camera backend)")
        return cap
    path = Path(src)
    if not path.exists():
        raise ValueError(f"input video {src!r} does not exist")
    if not path.is_file():
        raise ValueError(f"input video {src!r} is not a file")
    cap = _quiet(lambda: cv2.VideoCapture(str(path)))
    if not cap.isOpened():
        raise ValueError(f"cannot read input video {src!r}: OpenCV could not open it as a video")
    return cap


def _quiet(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with OpenCV's own log silenced (its warnings duplicate our error messages)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:  # pragma: no cover - very old OpenCV
        return fn()
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        return fn()
    finally:
        logging.setLogLevel(level)


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early (before a model is loaded) when ``path`` cannot be written.

    Raises:
        ValueError: ``path`` is a folder, its folder does not exist, or the folder is not writable.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"output {str(p)!r} is a folder; give a file name such as out.mp4")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"cannot write output video {str(p)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ValueError(f"cannot write output video {str(p)!r}: permission denied")
    return p


def open_writer(path: str | os.PathLike[str], fps: float, frame_size: tuple[int, int]) -> cv2.VideoWriter:
    """``cv2.VideoWriter(path, mp4v, fps, (width, height))`` for frames of ``frame_size = (height, width)``.

    Raises:
        ValueError: unwritable path (see :func:`check_output_path`), non-positive fps/size, or a writer
            OpenCV fails to open (e.g. an extension without a container for ``mp4v``).
    """
    p = check_output_path(path)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    h, w = (int(v) for v in frame_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"frame_size must be a positive (height, width), got {frame_size!r}")
    writer = _quiet(lambda: cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h)))
    if not writer.isOpened():
        raise ValueError(f"cannot write output video {str(p)!r}: OpenCV could not open an mp4v writer for it")
    return writer


def read_frames(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """All frames of a video file as BGR uint8 arrays (for tests and small clips).

    Raises:
        ValueError: see :func:`open_capture`.
    """
    cap = open_capture(Path(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


def write_synthetic_video(
    path: str | os.PathLike[str],
    n_frames: int = 10,
    frame_size: tuple[int, int] = (96, 96),
    square: int = 24,
    fps: float = 10.0,
    seed: int = 0,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Write a clip of a bright square moving on a noisy background; return its boxes.

    The square moves on a diagonal from the top-left to the bottom-right corner region. With
    ``background`` (an image ``(h, w, 3)`` BGR uint8, e.g. a photo), the frames instead pan across that
    image (a real-image camera move: the window slides diagonally, resized to ``frame_size``) and the
    square is still drawn.

    Args:
        path: output file (``.mp4``).
        n_frames: number of frames (≥ 1).
        frame_size: ``(height, width)``.
        square: side of the square in pixels.
        fps: frame rate stored in the file.
        seed: seed of the background noise.
        background: optional image to pan across instead of noise.

    Returns:
        ``(n_frames, 4)`` int64 inclusive boxes ``[x0, y0, x1, y1]`` of the square in each frame.
    """
    h, w = (int(v) for v in frame_size)
    if n_frames < 1 or square < 1 or square > min(h, w):
        raise ValueError(f"need n_frames >= 1 and 1 <= square <= min(frame_size), got {n_frames}, {square}")
    rng = np.random.default_rng(seed)
    writer = open_writer(path, fps, (h, w))
    boxes = np.empty((n_frames, 4), dtype=np.int64)
    try:
        for i in range(n_frames):
            u = i / max(n_frames - 1, 1)
            if background is None:
                frame = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
            else:
                bh, bw = background.shape[:2]
                ch, cw = int(bh * 0.8), int(bw * 0.8)
                y, x = round(u * (bh - ch)), round(u * (bw - cw))
                frame = cv2.resize(background[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA)
            x0 = round(0.1 * w + u * (0.8 * w - square))
            y0 = round(0.1 * h + u * (0.8 * h - square))
            frame[y0 : y0 + square, x0 : x0 + square] = 255
            boxes[i] = (x0, y0, x0 + square - 1, y0 + square - 1)
            writer.write(frame)
    finally:
        writer.release()
    return boxes


# ----------------------------------------------------------------------------------------------
# Temporal smoothing
# ----------------------------------------------------------------------------------------------


class CamSmoother:
    r"""Exponential moving average of per-frame tensors (logits and CAMs) across frames.

    Moreaux et al. 2018 §5 (future work): a prediction "based on a coherence of several consecutive frames
    rather than on a single frame".

    .. math:: \bar M_t = \alpha \bar M_{t-1} + (1 - \alpha) M_t, \qquad \bar M_0 = M_0

    Called once per frame with the same tensors in the same order, e.g. ``logits, cams = smoother(logits,
    cams)``. A frame with non-finite values gives non-finite smoothed values (NaN stays NaN, so box
    extraction counts the map as degenerate instead of producing numbers), and the average restarts at the
    next frame, so one bad frame cannot poison all the following ones. A change in the number or shapes of
    the tensors (another input size) restarts it too.

    Args:
        alpha: weight of the past in ``[0, 1)``; 0 = no smoothing.
    """

    def __init__(self, alpha: float = 0.0) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= float(alpha) < 1.0:
            raise ValueError(f"smooth (the EMA weight alpha) must be in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)
        self._state: tuple[Tensor, ...] | None = None

    def reset(self) -> None:
        """Forget the past frames (e.g. at a scene cut or a new video)."""
        self._state = None

    def __call__(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """The smoothed tensors of one frame given its raw ones (same order and shapes every frame)."""
        if self.alpha == 0.0:
            return tensors
        prev = self._state
        fresh = (
            prev is None
            or [t.shape for t in prev] != [t.shape for t in tensors]
            or not all(bool(torch.isfinite(t).all()) for t in prev)
        )
        if fresh:
            self._state = tuple(t.clone() for t in tensors)
        else:
            # torch.lerp(new, prev, a) = new + a·(prev − new) = a·prev + (1 − a)·new
            self._state = tuple(torch.lerp(t, p, self.alpha) for t, p in zip(tensors, prev, strict=True))  # type: ignore[arg-type]
        return self._state


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


class StageTimer:
    """Accumulated wall time per pipeline stage (:data:`STAGES`); ``with timer("forward"): ...``."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._sync = sync

    def __call__(self, stage: str) -> _Stage:
        if stage not in self.seconds:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(self.seconds)}")
        return _Stage(self, stage)

    def add(self, stage: str, seconds: float) -> None:
        """Add time measured elsewhere to ``stage``."""
        if stage not in self.seconds:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(self.seconds)}")
        self.seconds[stage] += seconds


class _Stage:
    def __init__(self, timer: StageTimer, stage: str) -> None:
        self.timer, self.stage = timer, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.timer._sync is not None:  # CUDA kernels are asynchronous: wait before reading the clock
            self.timer._sync()
        self.timer.seconds[self.stage] += time.perf_counter() - self.t0


@dataclass
class VideoStats:
    """What :func:`process_video` measured.

    Attributes:
        frames: frames processed.
        seconds: wall time of the whole loop (decode to encode, model loading excluded).
        stage_seconds: wall time per stage (:data:`STAGES`).
        degenerate_maps: top-k maps that were constant or non-finite (boxes ``[0, 0, 0, 0]``).
        frame_size: ``(height, width)`` of the frames.
        batch: frames per forward pass.
    """

    frames: int
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    degenerate_maps: int = 0
    frame_size: tuple[int, int] = (0, 0)
    batch: int = 1

    @property
    def fps(self) -> float:
        """Mean end-to-end frames per second."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    @property
    def model_seconds(self) -> float:
        """Time in the forward pass only."""
        return self.stage_seconds.get("forward", 0.0)

    @property
    def model_fps(self) -> float:
        """Frames per second of the forward pass alone (the ceiling of the pipeline)."""
        return self.frames / self.model_seconds if self.model_seconds > 0 else float("nan")

    def ms_per_frame(self) -> dict[str, float]:
        """Milliseconds per frame of each stage and ``"total"``."""
        n = max(self.frames, 1)
        out = {k: 1000.0 * v / n for k, v in self.stage_seconds.items()}
        out["total"] = 1000.0 * self.seconds / n
        return out

    def summary(self) -> str:
        """Two lines: totals and the per-stage split in ms/frame."""
        split = ", ".join(f"{k} {v:.1f}" for k, v in self.ms_per_frame().items() if k != "total")
        return (
            f"{self.frames} frames in {self.seconds:.2f} s: mean {self.fps:.1f} fps end to end, "
            f"{self.model_fps:.1f} fps model only (forward pass, batch {self.batch})\n"
            f"ms per frame: {split}"
        )


# ----------------------------------------------------------------------------------------------
# Localization of frames
# ----------------------------------------------------------------------------------------------


def _is_zhou_gap(model: nn.Module) -> bool:
    """Whether ``model`` is backbone → :class:`~wsol.heads.ZhouHead` with GAP (the top-k shortcut is exact)."""
    head = getattr(model, "head", None)
    return (
        hasattr(model, "backbone")
        and isinstance(head, ZhouHead)
        and isinstance(head.pool, GlobalAvgPool)
        and head.scale is None
    )


class StreamingCAMNet(nn.Module):
    r"""A CAM network seen through time: the EMA of its ``(logits, cams)`` over consecutive frames.

    ``forward(x)`` takes a batch of *consecutive* frames (in order; the state carries over between calls)
    and returns ``CAMOutput(logits, cams)`` smoothed with :class:`CamSmoother`, so any consumer of
    ``(logits, cams)`` — here :class:`wsol.localizer.Localizer` — extracts its boxes from the smoothed maps.

    **Top-k shortcut** (``topk`` given and the model is backbone → Zhou head with GAP, e.g.
    ``efficientnet_lite0``): with features ``f`` (K, h, w) and FC ``(W, b)``, ``S = W·mean(f) + b`` and
    ``M_c = Σ_k W_ck f_k`` are linear in ``f``, so the scores and the CAMs of the top-k classes need only
    ``k`` rows of ``W`` (for ImageNet, 1000 − k map rows per frame are never computed). The returned
    ``cams`` then hold the maps of each frame's top-k classes — ranked by ``softmax`` (``sigmoid`` for one
    class) of the logits exactly as the Localizer ranks them — and **zeros for every other class**. Smoothing
    then averages ``f`` instead: the EMA is affine with weights summing to 1, so ``W·EMA(f) = EMA(W·f)`` and
    ``W·mean(EMA f) + b = EMA(S)`` — exactly the EMA of all CAMs and logits (tests check both identities).

    Args:
        model: a CAM network returning ``(logits, cams)``.
        smooth: EMA weight ``α`` in ``[0, 1)``; 0 = off.
        topk: classes whose maps are needed; ``None`` = all (no shortcut).
        compile: run the backbone (shortcut) or the model through ``torch.compile``.
        channels_last: give the network its input in ``torch.channels_last`` layout (same numbers up to float
            rounding; oneDNN's NHWC convolutions are faster on CPUs: 1.6× at batch 32 and ~1.1× at batch 1
            for EfficientNet-Lite0 on our 2-core test machine, see ``benchmarks/README.md``).

    Attributes:
        calls: ``(t_enter, t_exit)`` ``time.perf_counter`` stamps of each forward (for the stage split).
        shortcut: whether the top-k shortcut is used.
    """

    def __init__(
        self,
        model: nn.Module,
        smooth: float = 0.0,
        topk: int | None = None,
        compile: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
            raise ValueError(f"topk must be a positive int or None, got {topk!r}")
        self.model = model.eval()
        self.smoother = CamSmoother(smooth)
        self.topk = topk
        self.shortcut = topk is not None and _is_zhou_gap(model)
        net = model.backbone if self.shortcut else model
        self._net: Callable[[Tensor], Any] = torch.compile(net) if compile else net  # type: ignore[assignment]
        self.class_names = getattr(model, "class_names", None)
        self.pretrained_cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        self.model_spec = getattr(model, "model_spec", None)
        self.channels_last = bool(channels_last)
        self.calls: list[tuple[float, float]] = []

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)  # type: ignore[arg-type]

    def reset(self) -> None:
        """Forget the smoothing state (new video / scene cut)."""
        self.smoother.reset()

    def forward(self, x: Tensor) -> CAMOutput:
        t0 = time.perf_counter()
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            out = self._shortcut(x) if self.shortcut else self._full(x)
        except RuntimeError as err:
            raise ValueError(f"the model cannot process {tuple(x.shape)} inputs: {err}") from err
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        self.calls.append((t0, time.perf_counter()))
        return out

    def _full(self, x: Tensor) -> CAMOutput:
        out = self._net(x)
        logits, cams = out[0], out[1]
        if self.smoother.alpha == 0.0:
            return CAMOutput(logits, cams)
        pairs = [self.smoother(lg, cm) for lg, cm in zip(logits, cams, strict=True)]
        return CAMOutput(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))

    def _shortcut(self, x: Tensor) -> CAMOutput:
        head = self.model.head
        weight, bias = head.fc.weight, head.fc.bias
        feats = self._net(x)
        if self.smoother.alpha > 0.0:
            feats = torch.stack([self.smoother(f)[0] for f in feats])
        logits = F.linear(feats.mean(dim=(2, 3)), weight, bias)
        k = min(int(self.topk), logits.shape[1])  # type: ignore[arg-type]
        scores = torch.sigmoid(logits.float()) if logits.shape[1] == 1 else torch.softmax(logits.float(), dim=1)
        ids = scores.topk(k, dim=1).indices  # the Localizer's own ranking rule
        maps = torch.einsum("bjk,bkhw->bjhw", weight[ids].to(feats.dtype), feats)
        b, _, h, w = feats.shape
        cams = feats.new_zeros(b, logits.shape[1], h, w)
        cams.scatter_(1, ids[:, :, None, None].expand(b, k, h, w), maps)
        return CAMOutput(logits, cams)


class VideoLocalizer:
    """Frames (BGR uint8, any size) → :class:`wsol.localizer.Prediction`, one forward pass per frame.

    A :class:`wsol.localizer.Localizer` (whole-frame resize to ``size × size``, top-k classes, the box
    strategy, boxes mapped back to frame pixels, degenerate-map counting) around a :class:`StreamingCAMNet`
    (temporal EMA of the maps before the boxes, top-k shortcut). Frames are converted BGR → RGB here.

    Args:
        model: a CAM network, a pretrained name (``"efficientnet_lite0"``) or a model checkpoint file.
        topk: classes per frame.
        box_strategy: a name of :func:`wsol.localize.available_box_strategies`.
        box_kwargs: parameters of the strategy (e.g. ``{"threshold": 0.3}``).
        smooth: EMA weight ``α`` in ``[0, 1)`` (:class:`CamSmoother`); 0 = off.
        size: network input side.
        batch_size: most frames per forward pass.
        device: where the model runs.
        fast: allow the top-k shortcut of :class:`StreamingCAMNet` (exact; used for Zhou GAP heads only).
        channels_last: feed the network ``channels_last`` input (faster on CPUs, see :class:`StreamingCAMNet`).
        compile: ``torch.compile`` the network (a C++ compiler is needed on the CPU; the first frames then
            take tens of seconds, later runs hit inductor's on-disk cache).

    Raises:
        ValueError: invalid arguments (see :class:`~wsol.localizer.Localizer`), unknown model, bad ``smooth``.
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike[str] = "efficientnet_lite0",
        topk: int = 1,
        box_strategy: str = "zhou",
        box_kwargs: dict[str, Any] | None = None,
        smooth: float = 0.0,
        size: int = 224,
        batch_size: int = 1,
        device: str | torch.device = "cpu",
        fast: bool = True,
        compile: bool = False,
        channels_last: bool = True,
    ) -> None:
        from wsol.localizer import Localizer

        CamSmoother(smooth)  # validate before loading anything
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive int, got {topk!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        dev = parse_device(device)
        net = model if isinstance(model, nn.Module) else load_model(model, device=dev)
        kwargs = dict(box_kwargs or {})
        if box_strategy == "gudi" and "rf" not in kwargs:  # geometry of the real network, not of the wrapper
            chans = int((getattr(net, "model_spec", None) or {}).get("in_chans", 3))
            kwargs["rf"] = receptive_field_chain(net, (size, size), chans)
        self.net = StreamingCAMNet(
            net, smooth=smooth, topk=topk if fast else None, compile=compile, channels_last=channels_last
        )
        self.localizer = Localizer(
            self.net,
            device=dev,
            topk=topk,
            box_strategy=box_strategy,
            strategy_kwargs=kwargs,
            input_size=size,
            batch_size=batch_size,
            score="sigmoid" if self.net.num_classes == 1 else "softmax",
        )
        self.batch_size = batch_size
        self.device = self.localizer.device

    @property
    def map_stats(self) -> MapStats:
        """Degenerate (constant / non-finite) maps met so far (they give no box)."""
        return self.localizer.stats

    def reset(self) -> None:
        """Forget the smoothing state (new video / scene cut)."""
        self.net.reset()

    def __call__(self, frames: Sequence[np.ndarray], timer: StageTimer | None = None) -> list[Prediction]:
        """Predictions for consecutive BGR frames (in order: the smoothing state carries over between calls).

        The time of each chunk of ``batch_size`` frames is split at the forward pass: before it =
        ``preprocess`` (BGR → RGB, resize, normalize), the pass = ``forward``, after it = ``boxes`` (top-k,
        upsampling, normalization, box extraction, mapping to frame pixels).

        Raises:
            ValueError: a frame that is not a BGR uint8 ``(h, w, 3)`` array (its index named), a model that
                cannot process the input size, non-finite logits.
        """
        timer = timer or StageTimer()
        out: list[Prediction] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            t0 = time.perf_counter()
            rgb = []
            for i, f in enumerate(chunk):
                if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                    got = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
                    raise ValueError(f"frame {start + i}: expected a BGR uint8 (h, w, 3) array, got {got}")
                rgb.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            self.net.calls.clear()
            preds = self.localizer.predict_arrays(rgb)
            t1 = time.perf_counter()
            (enter, leave) = self.net.calls[0]
            timer.add("preprocess", enter - t0)
            timer.add("forward", leave - enter)
            timer.add("boxes", t1 - leave)
            out.extend(preds)
        return out


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------


def draw_prediction(
    frame: np.ndarray, prediction: Prediction, fps: float | None = None, heatmap: bool = False
) -> np.ndarray:
    """Draw boxes + ``"name score"`` labels (optionally the top-1 heatmap, the fps) on a BGR frame.

    Args:
        frame: BGR uint8 ``(H, W, 3)`` of ``prediction.image_size``; drawn on in place (unless the heatmap
            creates a new array).
        prediction: the frame's :class:`~wsol.localizer.Prediction`.
        fps: frames per second to print in the bottom-left corner (``None`` = none; NaN prints ``-- fps``).
        heatmap: blend ``cv2.COLORMAP_JET`` of the top-1 map (``prediction.heatmap()``) at 50 %.

    Returns:
        The drawn frame. Box colours by rank: red, green, blue, yellow, magenta (BGR :data:`_COLORS`).
    """
    if heatmap:
        colored = cv2.applyColorMap(np.rint(prediction.heatmap(0) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        frame = cv2.addWeighted(frame, 0.5, colored, 0.5, 0.0)
    h = frame.shape[0]
    scale = max(0.35, h / 720.0)
    thick = max(1, round(h / 360))
    placed: list[tuple[int, int, int, int]] = []  # label rectangles drawn so far (x0, y0, x1, y1)
    for rank, c in enumerate(prediction.classes):
        color = _COLORS[rank % len(_COLORS)]
        for x0, y0, x1, y1 in c.boxes.tolist():
            cv2.rectangle(frame, (x0, y0), (x1, y1), color, thick)
        if len(c.boxes) == 0:  # a degenerate map gives no box
            continue
        x0, y0 = int(c.boxes[0, 0]), int(c.boxes[0, 1])
        label = f"{short_name(c.name)} {c.score:.2f}".encode("ascii", "replace").decode("ascii")  # Hershey: ASCII
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y0 - 3 if y0 - th - base - 3 >= 0 else y0 + th + 3
        rect = (x0, ty - th - 2, x0 + tw + 2, ty + base - 2)
        while any(rect[0] < p[2] and p[0] < rect[2] and rect[1] < p[3] and p[1] < rect[3] for p in placed):
            step = th + base + 2  # boxes sharing a corner: stack their labels instead of overwriting
            rect, ty = (rect[0], rect[1] + step, rect[2], rect[3] + step), ty + step
        placed.append(rect)
        cv2.rectangle(frame, rect[:2], rect[2:], color, cv2.FILLED)
        cv2.putText(frame, label, (x0 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick)
    if fps is not None:
        text = f"{fps:.1f} fps" if math.isfinite(fps) else "-- fps"
        org = (5, h - 6)  # bottom-left: box labels sit at the boxes' top edges
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2)
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick)
    return frame


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def _batches(
    cap: cv2.VideoCapture, batch: int, max_frames: int | None, timer: StageTimer
) -> Iterator[list[np.ndarray]]:
    """Consecutive groups of at most ``batch`` decoded frames (decode time recorded)."""
    done = 0
    while max_frames is None or done < max_frames:
        group: list[np.ndarray] = []
        with timer("decode"):
            while len(group) < batch and (max_frames is None or done + len(group) < max_frames):
                ok, frame = cap.read()
                if not ok:
                    break
                group.append(frame)
        if not group:
            return
        done += len(group)
        yield group
        if len(group) < batch and (max_frames is None or done < max_frames):
            return  # the stream ended inside this group


def process_video(
    source: str | int | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    localizer: VideoLocalizer,
    *,
    max_frames: int | None = None,
    batch: int | None = None,
    heatmap: bool = False,
    show_fps: bool = True,
    fps_window: int = 30,
    on_frame: Callable[[int, np.ndarray, Prediction], None] | None = None,
) -> VideoStats:
    """Localize every frame of ``source`` and write the annotated video to ``out``.

    Args:
        source: video file or camera index (see :func:`parse_source`).
        out: output ``.mp4`` (same size and frame rate as the input; 30 fps when the input reports none),
            or ``None`` to skip drawing and encoding (for timing the localization alone).
        localizer: the per-frame pipeline (its smoothing state is reset first).
        max_frames: stop after this many frames (needed for a camera unless interrupted).
        batch: frames decoded per step (default ``localizer.batch_size``, the frames per forward pass);
            a batch adds ``batch − 1`` frames of latency.
        heatmap: blend the top-1 CAM into the frames.
        show_fps: print the running fps (mean over the last ``fps_window`` frames) on the frames.
        fps_window: frames of the running fps.
        on_frame: called as ``on_frame(index, drawn_frame, prediction)`` after each frame.

    Returns:
        :class:`VideoStats`. A ``KeyboardInterrupt`` (Ctrl-C on a camera) stops the loop cleanly: the
        video written so far is closed and the statistics cover the frames done.

    Raises:
        ValueError: unreadable source, a video without frames, unwritable output, invalid arguments.
    """
    batch = localizer.batch_size if batch is None else batch
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames must be a positive int or None, got {max_frames!r}")
    if out is not None:
        check_output_path(out)
    cap = open_capture(source)
    sync = torch.cuda.synchronize if localizer.device.type == "cuda" else None
    timer = StageTimer(sync)
    localizer.reset()
    degenerate0 = localizer.map_stats.n_degenerate
    writer: cv2.VideoWriter | None = None
    ends: deque[float] = deque(maxlen=fps_window + 1)
    frames = 0
    frame_size = (0, 0)
    t_start = time.perf_counter()
    ends.append(t_start)
    try:
        for group in _batches(cap, batch, max_frames, timer):
            preds = localizer(group, timer)
            for frame, pred in zip(group, preds, strict=True):
                if frames == 0:
                    frame_size = (frame.shape[0], frame.shape[1])
                if out is not None:
                    with timer("draw"):
                        fps = (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 else float("nan")
                        drawn = draw_prediction(frame, pred, fps if show_fps else None, heatmap)
                    with timer("encode"):
                        if writer is None:
                            rate = cap.get(cv2.CAP_PROP_FPS)
                            writer = open_writer(out, rate if 0 < rate < 1000 else 30.0, frame_size)
                        writer.write(drawn)
                else:
                    drawn = frame
                if on_frame is not None:
                    on_frame(frames, drawn, pred)
                frames += 1
                ends.append(time.perf_counter())
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    seconds = time.perf_counter() - t_start
    if frames == 0:
        raise ValueError(f"cannot read input video {str(source)!r}: no frame could be decoded")
    return VideoStats(
        frames=frames,
        seconds=seconds,
        stage_seconds=dict(timer.seconds),
        degenerate_maps=localizer.map_stats.n_degenerate - degenerate0,
        frame_size=frame_size,
        batch=batch,
    )
