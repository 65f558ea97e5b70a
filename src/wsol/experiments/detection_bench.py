"""``wsol bench detection``: the two detection tables of the papers, reproduced at CPU scale.

* **(a) semi-supervised detection** (Qiu et al., §VI, Table V): R-FCN trained on the few images that have boxes,
  with and without the weakly supervised GWAP / GAP branch trained on every image's labels —
  :func:`wsol.detection.bench_semi.run_semi_supervised_table`.
* **(b) single-shot weakly supervised detection** (Gudi et al. 2017, Table 2): SPAM-CAM vs GMP-CAM vs GAP-CAM
  detectors trained from image labels only, mAP and frames per second —
  :func:`wsol.detection.bench_single_shot.run_single_shot_table`.

Both are written, next to the papers' numbers, to ``detection_bench.json`` (everything, machine information and
wall times included) and ``detection_bench.md`` (the two tables). The papers' numbers are VOC 2007 test mAPs of
ResNet-50 / VGG-16 networks; ours come from small networks on synthetic data, so only the *orderings* and the
*gaps* are comparable, not the values.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsol.atomic import atomic_write_text
from wsol.detection.bench_single_shot import PAPER_TABLE2, machine_info, run_single_shot_table

__all__ = [
    "JSON_NAME",
    "MARKDOWN_NAME",
    "PAPER_QIU_TABLE5",
    "format_markdown",
    "paper_method_name",
    "qiu_paper_map",
    "run_detection_bench",
]

JSON_NAME = "detection_bench.json"
MARKDOWN_NAME = "detection_bench.md"

#: Qiu et al. Table V: VOC 2007 test mAP (%) by the fraction of training images that have boxes (ResNet-50 R-FCN,
#: trained on VOC 2007 + 2012 trainval).
PAPER_QIU_TABLE5: dict[str, dict[float, float]] = {
    "R-FCN": {0.01: 29.89, 0.02: 40.25, 0.05: 53.24, 0.1: 61.05},
    "R-FCN + GAP": {0.01: 39.10, 0.02: 45.85, 0.05: 57.36, 0.1: 62.32},
    "R-FCN + GWAP": {0.01: 39.86, 0.02: 47.53, 0.05: 57.34, 0.1: 63.17},
    "R-FCN + GWAP + GAP": {0.01: 40.24, 0.02: 47.20, 0.05: 57.48, 0.1: 62.55},
}

Log = Callable[[str], Any]


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum() or ch == "+").replace("(ours)", "")


def qiu_paper_map(method: str, boxed_fraction: Any) -> float | None:
    """Qiu Table V's mAP for ``method`` at ``boxed_fraction`` (None when the paper has no such entry)."""
    try:
        fraction = float(boxed_fraction)
    except (TypeError, ValueError):
        return None
    key = _norm(method)
    for name, column in PAPER_QIU_TABLE5.items():
        if _norm(name) == key:
            for f, value in column.items():
                if math.isclose(f, fraction, rel_tol=1e-6):
                    return value
    return None


def paper_method_name(method: str) -> str:
    """Qiu Table V's spelling of a method name (``"rfcn+gwap"`` → ``"R-FCN + GWAP"``), else ``method`` itself."""
    key = _norm(method)
    return next((name for name in PAPER_QIU_TABLE5 if _norm(name) == key), method)


def _semi_supervised_table() -> Callable[..., dict[str, Any]] | None:
    """``run_semi_supervised_table`` when the R-FCN part of the package is installed, else None."""
    try:
        from wsol.detection.bench_semi import run_semi_supervised_table
    except ImportError:
        return None
    return run_semi_supervised_table


def _run_table(name: str, fn: Callable[..., dict[str, Any]], quick: bool, seed: int, log: Log) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        table = dict(fn(quick=quick, seed=seed, log=log))
        table["status"] = "ok"
    except Exception as err:  # a failing table is reported, the other one still runs
        log(f"[{name}] failed: {type(err).__name__}: {err}")
        table = {"status": "error", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    table["table_wall_s"] = round(time.perf_counter() - start, 1)
    return table


def run_detection_bench(
    out_dir: str | Path, *, quick: bool = False, seed: int = 0, log: Log | None = print
) -> dict[str, Any]:
    """Run tables (a) and (b), write ``detection_bench.json`` and ``detection_bench.md`` to ``out_dir``.

    Table (a) is skipped with a note when :mod:`wsol.detection.bench_semi` is not available. A table that raises
    is recorded with ``status: "error"`` and its message; the other table still runs.

    Returns:
        The report written to the JSON file.
    """
    say: Log = log if log is not None else (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    semi = _semi_supervised_table()
    if semi is None:
        table_a: dict[str, Any] = {
            "status": "unavailable",
            "note": "wsol.detection.bench_semi is not installed in this build; table (a) was not run",
        }
        say("[semi-supervised] wsol.detection.bench_semi not available: table (a) skipped")
    else:
        say("[semi-supervised] R-FCN with few boxed images ± weak GWAP/GAP branch (Qiu Table V)")
        table_a = _run_table("semi-supervised", semi, quick, seed, say)
    say("[single-shot] SPAM-CAM vs GMP-CAM vs GAP-CAM (Gudi Table 2)")
    table_b = _run_table("single-shot", run_single_shot_table, quick, seed, say)
    report = {
        "bench": "detection",
        "quick": bool(quick),
        "seed": int(seed),
        "machine": machine_info(),
        "wall_s": round(time.perf_counter() - start, 1),
        "tables": {"semi_supervised": table_a, "single_shot": table_b},
        "paper": {
            "qiu_table5_voc07_test_map": {m: {str(f): v for f, v in c.items()} for m, c in PAPER_QIU_TABLE5.items()},
            "gudi_table2_map": PAPER_TABLE2,
        },
    }
    atomic_write_text(out / JSON_NAME, json.dumps(report, indent=2, default=_json_default) + "\n")
    atomic_write_text(out / MARKDOWN_NAME, format_markdown(report))
    return report


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return str(value)


def _percent_scale(rows: list[dict[str, Any]]) -> float:
    """100 when every mAP of table (a) lies in ``[0, 1]`` (fractions), else 1 (already percentages)."""
    values = [r.get(k) for r in rows for k in ("map", "map_area")]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)]
    return 100.0 if numbers and all(0.0 <= v <= 1.0 for v in numbers) else 1.0


def _scaled(value: Any, scale: float) -> Any:
    return value * scale if isinstance(value, int | float) and not isinstance(value, bool) else value


def _table_a_markdown(table: dict[str, Any]) -> list[str]:
    lines = ["## (a) Semi-supervised detection: R-FCN ± weakly supervised branch (Qiu et al., Table V)", ""]
    if table.get("status") != "ok":
        lines += [f"Not run: {table.get('note') or table.get('error') or table.get('status')}", ""]
        return lines
    lines += [
        "| method | boxed fraction | boxed images | mAP (ours) | area mAP (ours) | CorLoc (ours) "
        "| Qiu Table V (VOC07 test) | train (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = list(table.get("rows", []))
    scale = _percent_scale(rows)
    for row in rows:
        method = str(row.get("method", "?"))
        paper = qiu_paper_map(method, row.get("boxed_fraction"))
        lines.append(
            f"| {paper_method_name(method)} | {_num(row.get('boxed_fraction'), 3)} "
            f"| {_num(row.get('boxed_images'), 0)} "
            f"| {_num(_scaled(row.get('map'), scale))} | {_num(_scaled(row.get('map_area'), scale))} "
            f"| {_num(_scaled(row.get('corloc'), scale))} | {_num(paper, 2)} | {_num(row.get('train_s'), 0)} |"
        )
    settings = table.get("settings") or {}
    if settings:
        lines += ["", "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items() if _short(v)), ""]
    lines += [
        "Qiu Table V, all columns (VOC 2007 test mAP %, by the fraction of boxed images): "
        + "; ".join(
            f"{m}: " + ", ".join(f"{f:g} → {v:.2f}" for f, v in c.items()) for m, c in PAPER_QIU_TABLE5.items()
        ),
        "",
    ]
    return lines


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None)) and len(str(value)) <= 80


def _table_b_markdown(table: dict[str, Any]) -> list[str]:
    lines = ["## (b) Single-shot weakly supervised detection: CAM poolings (Gudi et al. 2017, Table 2)", ""]
    if table.get("status") != "ok":
        lines += [f"Not run: {table.get('note') or table.get('error') or table.get('status')}", ""]
        return lines
    lines += [
        "| method | mAP (ours) | area mAP | CorLoc | Gudi VOC07 test | Gudi VOC12 val | classification mAP "
        "| detect fps | forward fps | r | floor | train (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.get("rows", []):
        paper = PAPER_TABLE2.get(row.get("pooling", ""), {})
        floor = "0" if row.get("relative_floor") is None else f"{row['relative_floor']}·max"
        lines.append(
            f"| {row['method']} | {_num(row['map'])} | {_num(row['map_area'])} | {_num(row['corloc'])} | "
            f"{_num(paper.get('voc07_test'))} | {_num(paper.get('voc12_val'))} | "
            f"{_num(row.get('classification_map'))} | {_num(row['detect_fps'], 0)} | "
            f"{_num(row['forward_fps'], 0)} | {row['ratio']} | {floor} | {_num(row['train_s'], 0)} |"
        )
    s = table.get("settings", {})
    machine = table.get("machine", {})
    lines += [
        "",
        f"Ours: {s.get('dataset', '')}; {s.get('min_digits')}–{s.get('max_digits')} digits per canvas, "
        f"{s.get('clutter', 0)} clutter fragments; {s.get('train_size')} training / {s.get('val_size')} validation / "
        f"{s.get('test_size')} test canvases; {s.get('model', '')}. {s.get('metric', '')}; {s.get('tuning', '')}. "
        "Classification mAP: image-level multi-label mAP of the same network on the test canvases. "
        f"Speed: {s.get('fps', '')}, {machine.get('cpu_count')} CPU(s), {machine.get('torch_threads')} torch "
        "thread(s). Paper: VGG-16 on PASCAL VOC, 35 fps on a GPU for ~500×500 images.",
        "",
    ]
    return lines


def format_markdown(report: dict[str, Any]) -> str:
    """The Markdown report of :func:`run_detection_bench` (both tables next to the papers' numbers)."""
    m = report.get("machine", {})
    lines = [
        f"# Detection bench{' (quick)' if report.get('quick') else ''}",
        "",
        f"seed {report.get('seed')}, wall time {_num(report.get('wall_s'), 0)} s on {m.get('cpu_count')} CPU(s), "
        f"torch {m.get('torch')} ({m.get('torch_threads')} threads), {m.get('platform')}.",
        "",
        "The papers' numbers are PASCAL VOC results of large pretrained networks; ours are small CPU-scale runs, so "
        "compare orderings and gaps, not values.",
        "",
    ]
    tables = report.get("tables", {})
    lines += _table_a_markdown(tables.get("semi_supervised", {}))
    lines += _table_b_markdown(tables.get("single_shot", {}))
    return "\n".join(lines).rstrip() + "\n"
