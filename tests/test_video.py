"""Tests of wsol.video and ``wsol video``: synthetic clips written with cv2.VideoWriter, tiny CAM models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from wsol.cli import main
from wsol.heads import build_head
from wsol.localizer import ClassPrediction, Prediction
from wsol.metrics.boxes import box_iou
from wsol.models import CAMNet, create_model, save_model_checkpoint
from wsol.video import (
    STAGES,
    CamSmoother,
    StreamingCAMNet,
    VideoLocalizer,
    draw_prediction,
    open_capture,
    open_writer,
    parse_source,
    process_video,
    read_frames,
    write_synthetic_video,
)

SIZE = 96  # network input side used with the tiny models (LeNet-5 maps: (96 − 12)/4 = 21 × 21)


def brightness_model() -> CAMNet:
    """One-class LeNet-5 CAM net whose CAM is a blurred brightness map (hand-set weights).

    conv 5×5 averaging the 3 channels → ReLU → max 2×2 → conv 5×5 averaging → ReLU → max 2×2 → 1×1 CAM
    conv with weight 1, bias 0 → GAP: a bright square gives the highest CAM values around it.
    """
    model = create_model(
        "lenet5", head="cam", pooling="gap", num_classes=1, in_chans=3, backbone_kwargs={"width1": 1, "width2": 1}
    )
    with torch.no_grad():
        conv1, conv2 = model.backbone[0], model.backbone[3]
        conv1.weight.fill_(1.0 / 75.0)
        conv2.weight.fill_(1.0 / 25.0)
        conv1.bias.zero_()
        conv2.bias.zero_()
        model.head.cam.weight.fill_(1.0)
        model.head.cam.bias.zero_()
    model.class_names = ["bright"]
    return model.eval()


def aligned_brightness_model() -> CAMNet:
    """One-class CAM net whose maps are *aligned* with the input: 5×5 'same' averaging conv → ReLU → 4×4
    average pooling (cell ``c`` covers pixels ``4c … 4c + 3``, centre ``4c + 1.5`` = where bilinear upsampling
    puts it) → 1×1 CAM conv (weight 1, bias 0). LeNet-5's valid convolutions shift its maps (cell ``c`` is
    centred on pixel ``4c + 7.5``), which upsampling a CAM to the frame does not model."""
    backbone = nn.Sequential(nn.Conv2d(3, 1, 5, padding=2), nn.ReLU(), nn.AvgPool2d(4))
    model = CAMNet(backbone, build_head("cam", 1, 1, pooling="gap"))
    with torch.no_grad():
        backbone[0].weight.fill_(1.0 / 75.0)
        backbone[0].bias.zero_()
        model.head.cam.weight.fill_(1.0)
        model.head.cam.bias.zero_()
    model.class_names = ["bright"]
    return model.eval()


def zhou_model(num_classes: int = 4) -> CAMNet:
    """Random small LeNet-5 → Zhou head (GAP → FC): the model class that takes the top-k shortcut."""
    torch.manual_seed(0)
    model = create_model(
        "lenet5",
        head="zhou",
        pooling="gap",
        num_classes=num_classes,
        in_chans=3,
        backbone_kwargs={"width1": 4, "width2": 8},
    )
    return model.eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("video") / "square.mp4"
    boxes = write_synthetic_video(path, n_frames=10, frame_size=(SIZE, SIZE), square=24, fps=10.0)
    return path, boxes


# ----------------------------------------------------------------------------------------------
# synthetic clip and I/O
# ----------------------------------------------------------------------------------------------


def test_synthetic_clip_is_readable_and_square_where_stated(clip: tuple[Path, np.ndarray]) -> None:
    path, boxes = clip
    frames = read_frames(path)
    assert len(frames) == 10 and frames[0].shape == (SIZE, SIZE, 3)
    for frame, (x0, y0, x1, y1) in zip(frames, boxes, strict=True):
        gray = frame.mean(axis=2)
        inside = gray[y0 + 2 : y1 - 1, x0 + 2 : x1 - 1].mean()
        assert inside > 200 and np.median(gray) < 60  # mp4v is lossy: loose bounds
    assert boxes[0, 0] < boxes[-1, 0] and boxes[0, 1] < boxes[-1, 1]  # it moves
    assert (boxes[:, 2] - boxes[:, 0] == 23).all()


def test_parse_source() -> None:
    assert parse_source("0") == 0 and parse_source("12") == 12 and parse_source(3) == 3
    assert parse_source("clip.mp4") == "clip.mp4" and parse_source(Path("a/0.mp4")) == "a/0.mp4"
    assert parse_source(Path("0")) == "0"  # a Path is a file, never a camera


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        open_capture(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="not a file"):
        open_capture(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(ValueError, match="cannot read input video"):
        open_capture(bad)
    with pytest.raises(ValueError, match="cannot open camera index 97"):
        open_capture("97")
    with pytest.raises(ValueError, match="does not exist"):
        open_writer(tmp_path / "no" / "out.mp4", 10.0, (8, 8))
    with pytest.raises(ValueError, match="is a folder"):
        open_writer(tmp_path, 10.0, (8, 8))
    with pytest.raises(ValueError, match="fps"):
        open_writer(tmp_path / "out.mp4", 0.0, (8, 8))


# ----------------------------------------------------------------------------------------------
# smoothing
# ----------------------------------------------------------------------------------------------


def test_smoother_is_an_ema_hand_computed() -> None:
    s = CamSmoother(0.25)
    m1, m2, m3 = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 8.0]]), torch.tensor([[2.0, 2.0]])
    assert torch.equal(s(m1)[0], m1)  # first frame: M̄0 = M0
    torch.testing.assert_close(s(m2)[0], torch.tensor([[1.0, 6.0]]))  # 0.25·[4, 0] + 0.75·[0, 8]
    torch.testing.assert_close(s(m3)[0], torch.tensor([[1.75, 3.0]]))  # 0.25·[1, 6] + 0.75·[2, 2]
    s.reset()
    assert torch.equal(s(m3)[0], m3)
    assert CamSmoother(0.0)(m1)[0] is m1  # alpha 0: untouched


def test_smoother_nan_frame_restarts() -> None:
    s = CamSmoother(0.5)
    s(torch.ones(2))
    bad = s(torch.tensor([float("nan"), 1.0]))[0]
    assert torch.isnan(bad[0]) and bad[1] == 1.0  # NaN is not turned into a number
    assert torch.equal(s(torch.full((2,), 3.0))[0], torch.full((2,), 3.0))  # restarted, not NaN forever


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 2, float("nan"), True])
def test_smoother_rejects_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="smooth"):
        CamSmoother(alpha)


def test_streaming_net_is_ema_of_logits_and_maps_two_frames() -> None:
    model = aligned_brightness_model()
    torch.manual_seed(1)
    x1, x2 = torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        (l1, m1), (l2, m2) = model(x1), model(x2)
        net = StreamingCAMNet(model, smooth=0.75)
        s1, s2 = net(x1), net(x2)
        torch.testing.assert_close(s1.cams, m1)
        torch.testing.assert_close(s2.cams, 0.75 * m1 + 0.25 * m2)  # M̄1 = α M0 + (1 − α) M1
        torch.testing.assert_close(s2.logits, 0.75 * l1 + 0.25 * l2)
        assert not torch.allclose(s2.cams, m2)  # the test can fail: smoothing changed frame 2
        net.reset()
        both = net(torch.cat([x1, x2]))  # a batch of consecutive frames = the same frames one by one
        torch.testing.assert_close(both.cams, torch.cat([s1.cams, s2.cams]))


def test_streaming_net_channels_last_same_numbers() -> None:
    model = zhou_model(3)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        ref = model(x)
        out = StreamingCAMNet(model, channels_last=True)(x)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.cams, ref.cams, rtol=1e-4, atol=1e-5)


def test_smoothing_moves_the_box_towards_the_past(clip: tuple[Path, np.ndarray]) -> None:
    frames = read_frames(clip[0])
    raw = VideoLocalizer(aligned_brightness_model(), size=SIZE, box_kwargs={"threshold": 0.5})(frames)
    smooth = VideoLocalizer(aligned_brightness_model(), size=SIZE, box_kwargs={"threshold": 0.5}, smooth=0.5)(frames)
    assert np.array_equal(smooth[0].classes[0].boxes, raw[0].classes[0].boxes)  # M̄0 = M0
    for t in range(1, len(frames)):  # the square moves right/down: the EMA box lags behind, but overlaps it
        (r,), (s,) = raw[t].classes[0].boxes, smooth[t].classes[0].boxes
        assert s[0] < r[0] and s[1] < r[1] and s[2] <= r[2] + 1 and box_iou(s[None], r[None])[0, 0] > 0.3


# ----------------------------------------------------------------------------------------------
# per-frame localization
# ----------------------------------------------------------------------------------------------


def test_boxes_follow_the_square(clip: tuple[Path, np.ndarray]) -> None:
    path, gt = clip
    loc = VideoLocalizer(aligned_brightness_model(), size=SIZE, box_kwargs={"threshold": 0.5})
    preds = loc(read_frames(path))
    boxes = [p.classes[0].boxes for p in preds]
    ious = [box_iou(b, g[None])[0, 0] for b, g in zip(boxes, gt, strict=True)]
    assert min(ious) > 0.9, ious
    centres = np.array([(b[0, :2] + b[0, 2:]) / 2 for b in boxes])
    np.testing.assert_allclose(centres, (gt[:, :2] + gt[:, 2:]) / 2, atol=1.5)
    assert all(p.classes[0].name == "bright" and p.classes[0].class_id == 0 for p in preds)
    assert all(p.classes[0].score > 0.5 for p in preds)  # one-class model: sigmoid of a positive mean CAM
    assert all(p.image_size == (SIZE, SIZE) for p in preds)


def test_boxes_are_in_frame_pixels_for_non_square_frames(clip: tuple[Path, np.ndarray]) -> None:
    frame = read_frames(clip[0])[3]
    gt = clip[1][3].astype(float)
    wide = cv2.resize(frame, (2 * SIZE, SIZE), interpolation=cv2.INTER_NEAREST)  # stretch x by 2
    loc = VideoLocalizer(aligned_brightness_model(), size=SIZE, box_kwargs={"threshold": 0.5})
    pred = loc([wide])[0]
    expected = np.array([[2 * gt[0], gt[1], 2 * gt[2] + 1, gt[3]]])
    assert pred.image_size == (SIZE, 2 * SIZE)
    assert box_iou(pred.classes[0].boxes, expected)[0, 0] > 0.9


def test_topk_shortcut_equals_full_model_with_smoothing(clip: tuple[Path, np.ndarray]) -> None:
    model = zhou_model(5)
    torch.manual_seed(2)
    xs = [torch.rand(1, 3, SIZE, SIZE) for _ in range(4)]
    fast = StreamingCAMNet(model, smooth=0.6, topk=2)
    full = StreamingCAMNet(model, smooth=0.6)
    assert fast.shortcut and not full.shortcut
    with torch.inference_mode():
        for x in xs:
            a, b = fast(x), full(x)
            torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-6)
            top = torch.softmax(b.logits[0], 0).topk(2).indices
            torch.testing.assert_close(a.cams[0, top], b.cams[0, top], rtol=1e-4, atol=1e-6)
            rest = torch.ones(5, dtype=torch.bool)
            rest[top] = False
            assert (a.cams[0, rest] == 0).all()  # maps of the other classes are never computed
    # and the whole pipeline gives the same classes, scores and boxes either way
    frames = read_frames(clip[0])[:4]
    p_fast = VideoLocalizer(model, topk=2, size=SIZE, smooth=0.6)(frames)
    p_full = VideoLocalizer(model, topk=2, size=SIZE, smooth=0.6, fast=False)(frames)
    for pa, pb in zip(p_fast, p_full, strict=True):
        for ca, cb in zip(pa.classes, pb.classes, strict=True):
            assert ca.class_id == cb.class_id and ca.score == pytest.approx(cb.score, rel=1e-5)
            np.testing.assert_array_equal(ca.boxes, cb.boxes)


def test_localizer_rejects_bad_arguments_and_frames() -> None:
    model = brightness_model()
    for kwargs, match in (
        ({"topk": 0}, "topk"),
        ({"size": 0}, "size"),
        ({"box_strategy": "nope"}, "strategy"),
        ({"smooth": 1.0}, "smooth"),
        ({"device": "cuda:7" if not torch.cuda.is_available() else "nonsense"}, "device|CUDA"),
    ):
        with pytest.raises(ValueError, match=match):
            VideoLocalizer(model, **kwargs)  # type: ignore[arg-type]
    loc = VideoLocalizer(model, size=SIZE)
    with pytest.raises(ValueError, match="frame 1"):
        loc([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="cannot process"):
        VideoLocalizer(model, size=8)([np.zeros((8, 8, 3), np.uint8)])  # LeNet needs >= 16 px


def test_draw_prediction_draws_box_in_rank_color() -> None:
    frame = np.zeros((60, 80, 3), np.uint8)
    cls = ClassPrediction(0, "thing, stuff", 0.9, np.array([[10, 20, 50, 40]]), np.array([1.0]))
    pred = Prediction((60, 80), (60, 80), [cls], np.zeros((1, 3, 4), np.float32))
    out = draw_prediction(frame.copy(), pred, fps=12.5)
    assert tuple(out[30, 10]) == (0, 0, 255) and tuple(out[40, 30]) == (0, 0, 255)  # red top-1 box edges
    assert tuple(out[30, 30]) == (0, 0, 0)  # inside untouched
    assert out[45:, :40].any() and not frame[45:, :40].any()  # the fps text, bottom-left
    heat = draw_prediction(frame.copy(), pred, heatmap=True)
    assert heat[30, 30].any()  # the jet colormap of a degenerate (zero) map is dark blue, blended at 50 %


def test_draw_prediction_stacks_labels_of_boxes_sharing_a_corner() -> None:
    box = np.array([[0, 0, 70, 50]])
    classes = [ClassPrediction(i, f"c{i}", 0.5, box.copy(), np.array([1.0])) for i in range(2)]
    out = draw_prediction(np.zeros((60, 80, 3), np.uint8), Prediction((60, 80), (60, 80), classes, np.zeros((2, 3, 4))))
    red = np.all(out == (0, 0, 255), axis=2)[1:, 1:]  # label backgrounds (inside the box outline)
    green = np.all(out == (0, 200, 0), axis=2)[1:, 1:]
    assert red[:8].any() and green.any()  # both labels visible: the second one below the first
    assert np.flatnonzero(green.any(axis=1)).max() > np.flatnonzero(red.any(axis=1)).max()


# ----------------------------------------------------------------------------------------------
# the loop and the command
# ----------------------------------------------------------------------------------------------


def test_process_video_writes_all_frames(clip: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    seen: list[Prediction] = []
    loc = VideoLocalizer(aligned_brightness_model(), size=SIZE, box_kwargs={"threshold": 0.5}, batch_size=3)
    stats = process_video(clip[0], out, loc, heatmap=True, on_frame=lambda i, f, p: seen.append(p))
    frames = read_frames(out)
    assert len(frames) == 10 == stats.frames == len(seen) and frames[0].shape == (SIZE, SIZE, 3)
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    cap.release()
    assert set(stats.stage_seconds) == set(STAGES) and all(v >= 0 for v in stats.stage_seconds.values())
    assert stats.fps > 0 and stats.model_fps >= stats.fps and stats.frame_size == (SIZE, SIZE)
    # batching changes nothing but speed: the same boxes frame by frame
    single = VideoLocalizer(aligned_brightness_model(), size=SIZE, box_kwargs={"threshold": 0.5})(read_frames(clip[0]))
    assert all(np.array_equal(a.classes[0].boxes, b.classes[0].boxes) for a, b in zip(seen, single, strict=True))
    assert stats.batch == 3
    part = process_video(clip[0], None, loc, max_frames=4)
    assert part.frames == 4 and part.stage_seconds["encode"] == 0.0


def test_cli_video_end_to_end(clip: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = tmp_path / "bright.pt"
    save_model_checkpoint(brightness_model(), ckpt)
    out = tmp_path / "cli.mp4"
    argv = ["video", str(clip[0]), "--out", str(out), "--model", str(ckpt), "--size", str(SIZE), "--max-frames", "7"]
    assert main([*argv, "--smooth", "0.5", "--threshold", "0.5", "--heatmap", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "7 frames in" in text and "fps model only" in text and "ms per frame: decode" in text
    frames = read_frames(out)
    assert len(frames) == 7 and frames[0].shape == (SIZE, SIZE, 3)


@pytest.mark.parametrize(
    ("input_name", "extra", "message"),
    [
        ("missing.mp4", [], "does not exist"),
        ("bad.mp4", [], "cannot read input video"),
        ("96", [], "cannot open camera index 96"),
        ("clip", ["--out", "{tmp}/nowhere/out.mp4"], "folder .* does not exist"),
        ("clip", ["--smooth", "1.5"], "smooth"),
        ("clip", ["--max-frames", "0"], "max-frames"),
        ("clip", ["--model", "no_such_model"], "unknown model"),
    ],
)
def test_cli_video_bad_input(
    clip: tuple[Path, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    input_name: str,
    extra: list[str],
    message: str,
) -> None:
    (tmp_path / "bad.mp4").write_text("not a video")
    source = str(clip[0]) if input_name == "clip" else input_name
    if input_name.endswith(".mp4"):
        source = str(tmp_path / input_name)
    argv = ["video", source, "--out", str(tmp_path / "o.mp4"), *[e.format(tmp=tmp_path) for e in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsol video:")
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "o.mp4").exists()
