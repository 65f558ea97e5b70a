"""`wsol bench detection` machinery: a micro run writes a JSON and a Markdown report that agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wsol.cli import main
from wsol.data.mnist128 import MNIST128
from wsol.detection.bench_single_shot import ClutteredMNIST128, SingleShotConfig, measure_fps, run_single_shot_table
from wsol.experiments import detection_bench
from wsol.experiments.detection_bench import (
    JSON_NAME,
    MARKDOWN_NAME,
    paper_method_name,
    qiu_paper_map,
    run_detection_bench,
)

MICRO = SingleShotConfig(
    poolings=("spam", "gap"), train_size=32, val_size=6, test_size=6, batch_size=16, ratios=(0.0, 0.5),
    floors=(None,), fps_images=2, fps_warmup=1, clutter=2,
)  # fmt: skip


def micro_single_shot(*, quick: bool, seed: int = 0, log: Any = None) -> dict[str, Any]:
    return run_single_shot_table(quick=quick, seed=seed, log=log, config=MICRO)


def fake_semi(*, quick: bool, seed: int = 0, log: Any = None) -> dict[str, Any]:
    # bench_semi's row format: method keys, mAPs as fractions
    rows = [
        {"method": "rfcn", "boxed_fraction": 0.01, "boxed_images": 20, "map": 0.125, "map_area": 0.13,
         "corloc": 0.5, "train_s": 1.0},
        {"method": "rfcn+gwap", "boxed_fraction": 0.01, "boxed_images": 20, "map": 0.2025, "map_area": 0.21,
         "corloc": 0.25, "train_s": 2.0},
    ]  # fmt: skip
    return {"rows": rows, "settings": {"quick": quick, "seed": seed}}


@pytest.fixture
def micro(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detection_bench, "run_single_shot_table", micro_single_shot)
    monkeypatch.setattr(detection_bench, "_semi_supervised_table", lambda: fake_semi)


def test_micro_run_writes_consistent_json_and_markdown(micro: None, tmp_path: Path) -> None:
    lines: list[str] = []
    report = run_detection_bench(tmp_path, quick=True, seed=3, log=lines.append)
    saved = json.loads((tmp_path / JSON_NAME).read_text())
    md = (tmp_path / MARKDOWN_NAME).read_text()
    assert saved["seed"] == 3 and saved["quick"] is True and saved["machine"]["cpu_count"] >= 1
    assert saved["tables"]["single_shot"]["status"] == "ok" and report["wall_s"] == saved["wall_s"]
    rows = saved["tables"]["single_shot"]["rows"]
    assert [r["method"] for r in rows] == ["SPAM-CAM", "GAP-CAM"]
    for row in rows:
        assert 0.0 <= row["map"] <= 100.0 and row["detect_fps"] > 0 and row["forward_fps"] > 0
        assert row["val_map"] == row["val_grid"][f"r={row['ratio']},floor={row['relative_floor']}"]
        assert row["val_map"] == max(row["val_grid"].values())  # the tuned setting is the validation optimum
        # the Markdown row carries the same numbers as the JSON, and the paper's value for that pooling
        paper = {"spam": "27.5", "gap": "15.6"}[row["pooling"]]
        assert f"| {row['method']} | {row['map']:.1f} | {row['map_area']:.1f} | {row['corloc']:.1f} | {paper} |" in md
    # table (a): our numbers next to Qiu Table V at the same boxed fraction
    assert "| R-FCN | 0.010 | 20 | 12.5 | 13.0 | 50.0 | 29.89 | 1 |" in md
    assert "| R-FCN + GWAP | 0.010 | 20 | 20.2 | 21.0 | 25.0 | 39.86 | 2 |" in md
    assert any("single-shot" in line for line in lines)
    settings = saved["tables"]["single_shot"]["settings"]
    assert settings["train_size"] == 32 and settings["clutter"] == 2 and settings["seed"] == 3


def test_unavailable_and_failing_tables_are_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(detection_bench, "_semi_supervised_table", lambda: None)

    def broken(**_kw: Any) -> dict[str, Any]:
        raise ValueError("no digits today")

    monkeypatch.setattr(detection_bench, "run_single_shot_table", broken)
    report = run_detection_bench(tmp_path, quick=True, log=None)
    assert report["tables"]["semi_supervised"]["status"] == "unavailable"
    assert report["tables"]["single_shot"]["status"] == "error"
    md = (tmp_path / MARKDOWN_NAME).read_text()
    assert "bench_semi is not installed" in md and "ValueError: no digits today" in md
    # the CLI exits with 1 when a table failed and still writes both files
    out = tmp_path / "cli"
    assert main(["bench", "detection", "--quick", "--out", str(out)]) == 1
    assert (out / JSON_NAME).is_file() and (out / MARKDOWN_NAME).is_file()


def test_cli_rejects_bad_output_folder_and_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["bench", "detection", "--out", str(blocker / "sub")]) == 2
    assert "cannot create output folder" in capsys.readouterr().err
    assert main(["bench", "detection", "--seed", "-1", "--out", str(tmp_path)]) == 2


def test_qiu_paper_lookup() -> None:
    assert qiu_paper_map("R-FCN", 0.01) == 29.89
    assert qiu_paper_map("r-fcn + gwap", 0.1) == 63.17
    assert qiu_paper_map("rfcn+gwap+gap", 0.02) == 47.20
    assert paper_method_name("rfcn+gap") == "R-FCN + GAP" and paper_method_name("other") == "other"
    assert qiu_paper_map("R-FCN", 0.5) is None and qiu_paper_map("SPAM", 0.01) is None


def test_clutter_is_deterministic_outside_the_digits_and_keeps_the_ground_truth() -> None:
    base = MNIST128("val", 4, variant="multilabel", seed=0)
    data = ClutteredMNIST128(base, clutter=6, seed=0)
    for i in range(4):
        plain, ann = base.canvas_uint8(i)
        cluttered = data.canvas_uint8(i)
        np.testing.assert_array_equal(cluttered, ClutteredMNIST128(base, 6, seed=0).canvas_uint8(i))
        inside = np.zeros_like(plain, dtype=bool)
        for x0, y0, x1, y1 in ann.boxes_placement:
            inside[y0 : y1 + 1, x0 : x1 + 1] = True
        np.testing.assert_array_equal(cluttered[inside], plain[inside])  # digits untouched
        assert (cluttered[~inside] > 0).any() and not (plain[~inside] > 0).any()  # ink only from clutter
        np.testing.assert_array_equal(data.annotation(i).boxes(), ann.boxes())
    image, target = data[0]
    assert image.shape == (1, 128, 128) and float(image.max()) <= 1.0
    np.testing.assert_array_equal(target.numpy(), base[0][1].numpy())
    assert not np.array_equal(data.canvas_uint8(0), ClutteredMNIST128(base, 6, seed=1).canvas_uint8(0))
    with pytest.raises(ValueError, match="clutter"):
        ClutteredMNIST128(base, clutter=-1)


def test_measure_fps_is_one_over_the_median() -> None:
    # timed calls take 1, 3 and 2 time units: median 2 → 0.5 fps; warm-up calls are not timed
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])
    calls: list[int] = []
    result = measure_fps(lambda x: calls.append(x), [1, 2, 3], warmup=2, clock=lambda: next(ticks))  # type: ignore
    assert calls == [1, 2, 1, 2, 3]
    assert result["fps"] == pytest.approx(0.5) and result["median_ms"] == pytest.approx(2000.0)
