"""wsol.data.records: ImageRecord checks, targets, the reader registry and unreadable-image skipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from wsol.data.records import (
    DatasetIndex,
    ImageRecord,
    RecordDataset,
    UnreadableImageWarning,
    build_index,
    collate_skip_bad,
    list_datasets,
    register_dataset,
)


def _record(tmp_path: Path, name: str, labels: tuple[int, ...], value: int = 0) -> ImageRecord:
    path = tmp_path / name
    Image.fromarray(np.full((4, 6, 3), value, dtype=np.uint8)).save(path)
    return ImageRecord(name, path, labels, boxes=[[1, 1, 3, 2]] if labels else None)


def test_record_defaults_box_labels_and_difficult(tmp_path: Path) -> None:
    r = _record(tmp_path, "a.png", (3,))
    assert r.boxes.dtype == np.float64 and r.boxes.shape == (1, 4)
    np.testing.assert_array_equal(r.box_labels, [3])
    np.testing.assert_array_equal(r.difficult, [False])
    assert r.label == 3
    multi = ImageRecord("m", tmp_path / "m.png", (1, 2), boxes=[[0, 0, 1, 1], [2, 2, 3, 3]], box_labels=[1, 2])
    with pytest.raises(ValueError, match="has 2 labels"):
        _ = multi.label
    with pytest.raises(ValueError, match="2 boxes but 1 box labels"):
        ImageRecord("x", tmp_path / "x.png", (1,), boxes=[[0, 0, 1, 1], [2, 2, 3, 3]], box_labels=[1])


def test_targets_single_and_multilabel(tmp_path: Path) -> None:
    recs = [_record(tmp_path, "a.png", (2,)), _record(tmp_path, "b.png", (0,))]
    single = DatasetIndex("t", tmp_path, "train", ["x", "y", "z"], recs)
    assert single.target(0).item() == 2 and single.target(0).dtype == torch.int64
    multi = DatasetIndex("t", tmp_path, "train", ["x", "y", "z"],
                         [ImageRecord("c", tmp_path / "a.png", (0, 2)), ImageRecord("d", tmp_path / "a.png", ())],
                         multilabel=True)
    torch.testing.assert_close(multi.target(0), torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(multi.target(1), torch.zeros(3))
    sub = single.subset([1], split="val")
    assert [r.image_id for r in sub.records] == ["b.png"] and sub.split == "val"


def test_dataset_skips_unreadable_images(tmp_path: Path) -> None:
    good = [_record(tmp_path, f"{i}.png", (i % 2,), value=10 * i) for i in range(3)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    recs = [good[0], ImageRecord("broken.png", broken, (1,)), good[1], good[2]]
    ds = RecordDataset(DatasetIndex("t", tmp_path, "train", ["a", "b"], recs), return_index=True)
    with pytest.warns(UnreadableImageWarning, match="broken.png"):
        assert ds[1] is None
    image, target, idx = ds[2]
    assert image.shape == (3, 4, 6) and torch.allclose(image, torch.full((3, 4, 6), 10 / 255))
    assert (target.item(), idx) == (1, 2)
    loader = DataLoader(ds, batch_size=2, collate_fn=ds.collate_fn)
    batches = list(loader)  # already reported once: no second warning
    assert [b[2].tolist() for b in batches] == [[0], [2, 3]]
    assert ds.bad_ids == {"broken.png"}
    assert collate_skip_bad([None, None]) is None


def test_registry_suggests_close_names(tmp_path: Path) -> None:
    @register_dataset("records_test_reader")
    def _reader(root: Path, split: str, **kwargs: object) -> DatasetIndex:
        return DatasetIndex("records_test_reader", root, split, ["a"], [], problems=[])

    assert "records_test_reader" in list_datasets()
    assert build_index("records_test_reader", tmp_path, "train").split == "train"
    with pytest.raises(ValueError, match="did you mean 'records_test_reader'"):
        build_index("records_test_reder", tmp_path, "train")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("records_test_reader")(_reader)
