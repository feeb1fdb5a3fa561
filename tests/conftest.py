"""Shared fixtures: a tiny SAM saved as a real checkpoint file, and small images/videos."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from i2v.sam_builder import load_sam


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module's tests: on a machine whose few cores are shared,
    several spin-waiting threads make small ops many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sam_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny SAM saved the way segment_anything checkpoints are saved."""
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(load_sam("tiny", seed=123).sam.state_dict(), path)
    return path


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def make_image(rng: np.random.Generator, h: int = 96, w: int = 128) -> np.ndarray:
    """An RGB image with a bright disc on smooth noise, (H, W, 3) uint8."""
    yy, xx = np.mgrid[:h, :w]
    img = (rng.random((h, w, 3)) * 80).astype(np.float32)
    disc = (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 5) ** 2
    img[disc] += 150
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture()
def image(rng: np.random.Generator) -> np.ndarray:
    return make_image(rng)
