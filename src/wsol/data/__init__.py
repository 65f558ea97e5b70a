"""Datasets: the readers of the papers' datasets (one :class:`~wsol.data.records.DatasetIndex` form for all),
MNIST128 (Gudi et al. 2017) and the field's standard metadata layout (Choe et al. 2020).

Importing this package registers every built-in reader with :func:`~wsol.data.records.build_index`:
``standard``, ``cub``, ``ilsvrc``, ``voc``, ``stanford40`` and ``folder``.
"""

from wsol.data import cub, folder, ilsvrc, standard, stanford40, voc  # noqa: F401  (register the readers)
from wsol.data.convert import write_metadata
from wsol.data.metadata import Metadata, MetadataError, MetadataProblem, read_metadata, read_predictions
from wsol.data.mnist128 import MNIST128, Annotation, load_digit_pools
from wsol.data.records import (
    DatasetIndex,
    ImageRecord,
    RecordDataset,
    build_index,
    collate_skip_bad,
    list_datasets,
    register_dataset,
)

__all__ = [
    "MNIST128",
    "Annotation",
    "DatasetIndex",
    "ImageRecord",
    "Metadata",
    "MetadataError",
    "MetadataProblem",
    "RecordDataset",
    "build_index",
    "collate_skip_bad",
    "list_datasets",
    "load_digit_pools",
    "read_metadata",
    "read_predictions",
    "register_dataset",
    "write_metadata",
]
