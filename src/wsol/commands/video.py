"""``wsol video``: CAM + boxes on every frame of a video file or a camera, written to an annotated mp4."""

from __future__ import annotations

import argparse
import sys

from wsol.localize import available_box_strategies


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "video",
        help="localize objects in a video or camera stream with CAMs (one forward pass per frame)",
        description="Reads INPUT (a video file, or a camera index such as 0), computes the class scores and "
        "class activation maps of every frame in one forward pass, extracts boxes for the top-k classes, "
        "draws boxes, labels and the running fps, and writes the annotated video (mp4v) to --out. Prints the "
        "number of frames, the time, the mean fps and the model-only fps at the end.",
    )
    parser.add_argument("input", metavar="INPUT", help="video file, or a camera index (an integer, e.g. 0)")
    parser.add_argument("--out", required=True, help="output video file (.mp4)")
    parser.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="pretrained name (wsol.models.list_pretrained) or a model checkpoint file (default: efficientnet_lite0)",
    )
    parser.add_argument("--topk", type=int, default=1, help="classes (boxes) per frame (default: 1)")
    parser.add_argument(
        "--box-strategy",
        default="zhou",
        choices=[s for s in available_box_strategies() if s != "gudi"],
        help="box extraction from the CAM (default: zhou = largest component above 20%% of the max)",
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="fraction of the normalized CAM for the box (default: 0.2)"
    )
    parser.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        help="EMA weight alpha in [0, 1) of the previous frames' maps: M_t <- alpha*M_(t-1) + (1-alpha)*M_t "
        "(default: 0 = off)",
    )
    parser.add_argument("--size", type=int, default=224, help="network input side; frames are resized to it")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames (default: all)")
    parser.add_argument("--batch", type=int, default=1, help="frames per forward pass (default: 1)")
    parser.add_argument("--heatmap", action="store_true", help="blend the top-1 CAM into the frames")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 is fastest on a loaded or shared machine",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the network (faster frames after a slow start)"
    )
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"wsol video: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    import torch

    from wsol.video import CamSmoother, VideoLocalizer, check_output_path, open_capture, process_video

    try:
        check_output_path(args.out)
        CamSmoother(args.smooth)  # validate before the (slow) model load
        for name, value in (("--max-frames", args.max_frames), ("--threads", args.threads), ("--batch", args.batch)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if args.threshold is not None and args.box_strategy == "otsu":
            raise ValueError("--threshold does not apply to --box-strategy otsu")
        open_capture(args.input).release()  # missing / unreadable input or camera: fail before loading
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        localizer = VideoLocalizer(
            args.model,
            topk=args.topk,
            box_strategy=args.box_strategy,
            box_kwargs={} if args.threshold is None else {"threshold": args.threshold},
            smooth=args.smooth,
            size=args.size,
            batch_size=args.batch,
            device=args.device,
            compile=args.compile,
        )
        stats = process_video(args.input, args.out, localizer, max_frames=args.max_frames, heatmap=args.heatmap)
    except ValueError as err:
        return _fail(str(err))
    print(stats.summary())
    if stats.degenerate_maps:
        print(f"{stats.degenerate_maps} constant or non-finite map(s) gave no box")
    print(f"wrote {args.out} ({stats.frames} frames, {stats.frame_size[1]}x{stats.frame_size[0]})")
    return 0
