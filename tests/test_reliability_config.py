"""Recipe values that would fail later (or silently never apply) are refused at load, and
malformed YAML is a one-sentence ConfigError (issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

from i2v.config_utils import read_yaml
from i2v.errors import ConfigError
from i2v.train.config import load_train_config

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "train_tiny_synthetic.yaml"
SAV_RECIPE = REPO / "configs" / "train_vit_b_sav.yaml"


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=.nan", "optim.lr: expected a finite number"),
        ("optim.lr=.inf", "optim.lr: expected a finite number"),
        ("optim.betas=[2,3]", r"optim.betas must be two numbers in \[0, 1\)"),
        ("optim.betas=[0.9]", "optim.betas: expected a list of 2 items"),
        ("clip.size=[0,0]", r"clip.size must be null or \[height, width\]"),
        ("clip.size=[1,2,3]", "clip.size: expected a list of 2 items"),
        ("clip.size=[100000,100000]", r"each in 1..8192"),
        ("clip.reverse_prob=7", r"clip.reverse_prob must be in \[0, 1\]"),
        ("clip.augment.hflip_prob=2", r"clip.augment.hflip_prob must be in \[0, 1\]"),
        ("num_workers=-1", "num_workers must be >= 0"),
        ("val.protocol=bogus", "val.protocol must be one of mask, box"),
        ("val.every=-1", "val needs every >= 0"),
        ("data.0.year=2018", "year must be 2016 or 2017"),
        ("model.upgrader.dim=1099511627776", "model.upgrader.dim is 1099511627776; at most 8192"),
        ("model.memory_readout.grid=1099511627776", "model.memory_readout.grid is 1099511627776"),
        ("epoch_length=0", "epoch_length must be >= 1"),
        ("data.0.synthetic.height=100000", r"height must be in \[32, 4096\]"),
    ],
)
def test_recipe_values_that_would_fail_later_are_refused_at_load(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_train_config(RECIPE, [override])


def test_an_sav_recipe_refuses_an_unknown_annotation_kind() -> None:
    with pytest.raises(ConfigError, match="annotation must be 'manual' or 'auto'"):
        load_train_config(SAV_RECIPE, ["data.0.annotation=automatic"])


@pytest.mark.parametrize(
    "override", ["optim.lr=[1,2", "optim.lr=!!python/object/apply:os.system [ls]", "optim.lr={a: b: c}"]
)
def test_an_override_that_is_not_yaml_is_a_one_line_config_error(override: str) -> None:
    with pytest.raises(ConfigError, match="not a YAML scalar or list") as info:
        load_train_config(RECIPE, [override])
    assert "\n" not in str(info.value)


def test_a_binary_or_broken_config_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="is not text"):
        read_yaml(binary)
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: .* at line \d+, column \d+") as info:
        read_yaml(broken)
    assert "\n" not in str(info.value)
