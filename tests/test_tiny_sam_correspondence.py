"""The correspondence objective of the tiny SAM's pretraining (i2v.checkpoints.correspondence)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from i2v.checkpoints.correspondence import (
    cell_labels,
    correspondence_loss,
    label_propagation,
    render_instances,
    sample_pair,
)
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset

LOOKALIKES = SyntheticConfig(distractor_prob=1.0, occlusion_prob=1.0)


def test_instances_render_the_same_frame_and_label_every_blob() -> None:
    ds = SyntheticVideoDataset("train", 4, config=LOOKALIKES)
    for index in range(4):
        scene = ds.scene(index)
        for t in (0, 5):
            image, masks, instances = render_instances(ds, index, t)
            assert np.array_equal(image, ds.frame(index, t))
            assert np.array_equal(masks, ds.masks(index, t))
            assert instances.max() <= len(scene.objects)
        unannotated = [i + 1 for i, o in enumerate(scene.objects) if o.obj_id == 0]
        seen = set(np.unique(np.concatenate([render_instances(ds, index, t)[2].ravel() for t in range(0, 24, 4)])))
        assert seen & set(unannotated), "look-alikes and occluders get instance ids of their own"


def test_cell_labels_are_fractions_with_padding_as_its_own_class() -> None:
    instances = np.zeros((120, 160), dtype=np.int64)
    instances[40:80, 50:100] = 1
    labels = cell_labels(instances, 2, (96, 128), 128, 16)  # (256, 3)
    assert labels.shape == (256, 3)
    assert torch.allclose(labels.sum(1), torch.ones(256))
    grid = labels.reshape(16, 16, 3)
    assert torch.all(grid[12:, :, 2] == 1)  # rows 96..127 of the input are SAM's padding
    assert torch.all(grid[:12, :, 2] == 0)
    assert grid[:12, :, 1].sum() > 0


def test_loss_prefers_features_that_tell_instances_apart() -> None:
    torch.manual_seed(0)
    ds = SyntheticVideoDataset("train", 8, config=LOOKALIKES)
    pair = sample_pair(ds, np.random.default_rng(0), min_area=20, max_gap=4)
    la, lb = (cell_labels(i, pair.num_classes, (96, 128), 128, 16) for i in pair.instances)
    # Features that are the labels themselves (plus a little noise) versus random features.
    good_a = (la.T + 0.01 * torch.randn(la.T.shape)).reshape(-1, 16, 16)
    good_b = (lb.T + 0.01 * torch.randn(lb.T.shape)).reshape(-1, 16, 16)
    rand_a = torch.randn(32, 16, 16, requires_grad=True)
    rand_b = torch.randn(32, 16, 16)
    good = float(correspondence_loss(good_a, good_b, la, lb, tau=0.05))
    bad = correspondence_loss(rand_a, rand_b, la, lb, tau=0.05)
    assert good < 0.5 * float(bad.detach()), (good, float(bad.detach()))
    bad.backward()
    assert rand_a.grad is not None and rand_a.grad.abs().sum() > 0


def test_label_propagation_reads_the_most_similar_key() -> None:
    keys = F.one_hot(torch.arange(3), 3).float()
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    read = label_propagation(torch.tensor([[2.0, 0.1, 0.0]]), keys, labels, tau=0.01)
    assert torch.allclose(read, torch.tensor([[1.0, 0.0]]), atol=1e-4)
