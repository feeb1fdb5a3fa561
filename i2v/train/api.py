"""Training from Python: what ``i2v.train`` and ``i2v.load_train_config`` are.

    import i2v
    config = i2v.load_train_config("my_train.yaml", ["optim.max_steps=500"])
    result = i2v.train(config)
    result.output_dir, result.metrics      # the run's folder, the final loss / validation J&F

``dataset=`` trains on one's own dataset object instead of the config's ``data`` (see
:mod:`i2v.data.custom` for the methods it needs; it is checked before training starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from i2v.errors import ConfigError
from i2v.train.config import TrainConfig, load_train_config

if TYPE_CHECKING:  # the trainer pulls in accelerate; import it only when training starts
    from i2v.train.trainer import TrainResult

__all__ = ["TrainConfig", "load_train_config", "train"]


def train(
    config: Union[TrainConfig, str, Path],
    dataset: Any = None,
    *,
    val_dataset: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> "TrainResult":
    """Train the adapters a config describes; returns the run's :class:`~i2v.train.trainer.TrainResult`.

    Args:
        config: a :class:`TrainConfig`, or the path (or bundled name) of a training recipe.
        dataset: optional dataset object to train on instead of ``config.data``: anything with
            ``__len__``, ``video_name``, ``num_frames``, ``obj_ids``, ``frame`` and ``masks``
            (:mod:`i2v.data.custom`), e.g. an :class:`i2v.data.folder.FolderDataset`.
        val_dataset: a dataset object to validate on every ``val.every`` steps (with ``dataset``;
            otherwise the validation split of the config's first dataset is used).
        resume, overwrite: as ``sam-i2v train --resume`` / ``--overwrite``.
        progress: show a progress bar.

    Returns:
        ``TrainResult`` with ``output_dir`` (the run's folder), ``metrics`` (the final
        training loss terms and, when it validated, ``val_jf`` ...), ``checkpoint`` (adapters
        loadable with ``build_i2v_video_predictor(checkpoint=...)``) and ``curve`` (PNG).

    Raises:
        ConfigError: a bad config, a tracker that is not installed, an output folder already
            holding a run (without ``resume`` / ``overwrite``).
        DatasetError: ``dataset`` does not follow the protocol.
    """
    from i2v.data.custom import as_video_dataset
    from i2v.train.trainer import train as run_training

    if isinstance(config, (str, Path)):
        config = load_train_config(config)
    if not isinstance(config, TrainConfig):
        raise ConfigError(
            f"i2v.train needs a TrainConfig or a recipe path, got {type(config).__name__}; "
            "build one with i2v.load_train_config(path, overrides) or i2v.TrainConfig(...)."
        )
    videos = as_video_dataset(dataset) if dataset is not None else None
    val = as_video_dataset(val_dataset) if val_dataset is not None else None
    return run_training(config, resume=resume, progress=progress, overwrite=overwrite, dataset=videos, val_dataset=val)
