"""Datasets: MNIST128 (Gudi et al. 2017) and the field's standard metadata layout (Choe et al. 2020)."""

from wsol.data.metadata import Metadata, MetadataError, MetadataProblem, read_metadata, read_predictions
from wsol.data.mnist128 import MNIST128, Annotation, load_digit_pools

__all__ = [
    "MNIST128",
    "Annotation",
    "Metadata",
    "MetadataError",
    "MetadataProblem",
    "load_digit_pools",
    "read_metadata",
    "read_predictions",
]
