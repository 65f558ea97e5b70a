"""Test-wide settings: one torch thread (CI has 2 cores; tests run many tiny ops where threads only cost)."""

import torch

torch.set_num_threads(1)
