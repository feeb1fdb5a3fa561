"""The training loop: frozen SAM, trainable adapters, one clip at a time.

    build the model (build_sam_i2v)        frozen SAM + zero-initialised adapters
    build the data                         clips from the recipe's datasets, in a resumable order
    AdamW (no decay on norms, biases, embeddings) + warmup/cosine LambdaLR
    accelerate.Accelerator                 device, mixed precision, DDP, grad accumulation, trackers
    per optimizer step, for each of grad_accum * batch_size clips:
        embeddings   feature cache, or model.encode_images under no_grad
        loss         clip_loss (simulated prompts, tracking through the clip)
        backward     (a non-finite loss anywhere skips the whole step on every process)
    grad clip → optimizer step → scheduler step
    every checkpoint_every steps: adapters + resumable state, written atomically

Clips are processed one at a time (SAM's decoder batches the prompts of one image, not
images), each as one accumulation micro-step, so ``batch_size`` clips cost the memory of one.
Under ``accelerate launch`` each process reads its own clips; only the adapters are in DDP
(the frozen SAM has no gradients to synchronise), and only the main process writes files.
A run never mixes with an earlier one in its ``output_dir``: it continues it (``resume``),
replaces it (``overwrite``) or refuses to start. Ctrl-C finishes the step in progress, saves a
checkpoint of it and raises :class:`~i2v.train.interrupt.TrainingInterrupted`, which says how
to resume.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
import yaml
from accelerate.utils import gather_object
from torch import nn
from tqdm import tqdm

from i2v.data.base import VideoDataset
from i2v.data.clips import TrainClip
from i2v.errors import I2VError
from i2v.io.atomic import write_text_atomic
from i2v.model import SamI2V
from i2v.pretrained import load_adapter_weights
from i2v.train import checkpointing as ckpt
from i2v.train.calibration import calibrate
from i2v.train.clip_step import ClipLossOutput, clip_loss, prepare_clip
from i2v.train.config import TrainConfig, train_config_to_dict
from i2v.train.curve import CURVE_NAME, final_metrics, plot_training_curve
from i2v.train.data import build_train_dataset, make_loader, open_videos
from i2v.train.feature_cache import FeatureCache
from i2v.train.interrupt import StopRequest, TrainingInterrupted, interrupted_message
from i2v.train.losses import LossWeights
from i2v.train.metrics_log import METRICS_NAME, MetricsLog, RunLog
from i2v.train.optim import WarmupCosine, param_groups
from i2v.train.prompts import PromptSimConfig
from i2v.train.run_setup import (  # noqa: F401 - earlier_run, weights_sha256: importable from here too
    build_model,
    check_dataset_objects,
    claim_output_dir,
    damaged_listing,
    dump_weight_hash,
    earlier_run,
    make_accelerator,
    resolve_trackers,
    weights_sha256,
)
from i2v.train.validation import validate

logger = logging.getLogger(__name__)


class NonFiniteLossError(I2VError, RuntimeError):
    """Too many steps in a row had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    """How a run ended.

    Attributes:
        step: optimizer steps done.
        output_dir: the run's folder (checkpoints, ``metrics.jsonl``, ``training_curve.png``).
        checkpoint: the last checkpoint written (``save_pretrained`` adapters inside), if any.
        nonfinite_steps: steps skipped for a non-finite loss or gradient.
        last_loss: the loss of the last step.
        main_process: False on the other processes of a multi-process run.
        metrics: the last logged training record's numbers (``loss``, its terms, ``lr``...)
            and, when the run validated, ``val_j``, ``val_f``, ``val_jf`` of the last validation.
        curve: the training-curve PNG, if one was drawn.
    """

    step: int
    output_dir: Path
    checkpoint: Optional[Path]
    nonfinite_steps: int
    last_loss: float
    main_process: bool = True
    metrics: Optional[Dict[str, float]] = None
    curve: Optional[Path] = None


class ClipObjective(nn.Module):
    """The loss of one clip as a module: what DDP wraps, so its gradient hooks fire.

    Holds the SamI2V; DDP registers only the parameters that require grad (the adapters).
    """

    def __init__(self, model: SamI2V, sim: PromptSimConfig, weights: LossWeights) -> None:
        super().__init__()
        self.model, self.sim, self.weights = model, sim, weights

    def forward(
        self, embeddings: torch.Tensor, gt: torch.Tensor, annotated: torch.Tensor, generator: np.random.Generator
    ) -> ClipLossOutput:
        return clip_loss(self.model, embeddings, gt, annotated, self.sim, self.weights, generator)


class Trainer:
    """One training run of a :class:`TrainConfig` (see the module docstring)."""

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
        dataset: Optional[VideoDataset] = None,
        val_dataset: Optional[VideoDataset] = None,
    ) -> None:
        started = time.time()  # temporaries older than this are from killed runs
        self.cfg, self.progress = cfg, progress
        resolve_trackers(cfg)  # a missing tracker package fails before anything is built
        self.val_dataset = val_dataset
        check_dataset_objects(cfg, dataset, val_dataset)
        self.out = Path(cfg.output_dir)
        claim = claim_output_dir(self.out, resume, overwrite)
        self.resume_from, self.damaged = claim.resume_from, claim.damaged
        self.acc = make_accelerator(cfg)
        self.main = self.acc.is_main_process
        if claim.replace and self.main:
            for p in claim.replace:  # only the run's own files; anything else in the folder stays
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        self.acc.wait_for_everyone()
        self.model = build_model(cfg, self.acc.device)
        # what calibration compares the trained weights with (cfg.calibration.compare_initial)
        self.initial_adapters = {n: p.detach().clone() for n, p in self.model.adapter_parameters().items()}
        self.cache = FeatureCache.for_run(cfg, self.model) if cfg.feature_cache.enabled else None
        self.dataset = build_train_dataset(cfg, dataset)
        self.videos = dataset  # the training videos when given directly (else the recipe's)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, o.weight_decay), lr=o.lr, betas=(o.betas[0], o.betas[1])
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, WarmupCosine.from_config(o))
        # The scheduler is not prepared: accelerate would step it once per process per step.
        self.objective, self.optimizer = self.acc.prepare(
            ClipObjective(self.model, cfg.prompts, cfg.loss), self.optimizer
        )
        self.step, self.position, self.nonfinite_total, self.nonfinite_in_row = 0, 0, 0, 0
        self.last_checkpoint: Optional[Path] = None
        resumed = self._resume() if resume else None
        self.metrics: Optional[MetricsLog] = None
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.out, started)
            if self.cache is not None:
                self.cache.remove_stale_temporaries(started)
            write_text_atomic(
                self.out / "train_config.yaml", yaml.safe_dump(train_config_to_dict(cfg), sort_keys=False)
            )
            # --resume with no checkpoint starts from step 0: every line already logged is redone
            self.metrics = MetricsLog(self.out / METRICS_NAME, (self.step if resumed else -1) if resume else None)
        self.log = RunLog(self.acc, self.metrics)
        if self.acc.log_with:
            self.acc.init_trackers(cfg.tracker_project)
        self.acc.wait_for_everyone()

    # -- resuming -------------------------------------------------------------------------
    def _resume(self) -> Optional[Path]:
        path = self.resume_from
        if self.damaged:
            self._note("skipping damaged checkpoint(s): %s.", damaged_listing(self.damaged))
        if path is None:
            self._note("--resume: no complete checkpoint in %s; starting from step 0.", self.out)
            return None
        state = ckpt.load_training_state(path)
        load_adapter_weights(self.model, path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        schedule = WarmupCosine.from_config(self.cfg.optim)
        if any(vars(fn) != vars(schedule) for fn in self.scheduler.lr_lambdas):
            self._note("the schedule differs from the checkpoint's; following the config (%s).", vars(schedule))
        self.scheduler.lr_lambdas = [schedule] * len(self.scheduler.lr_lambdas)
        if state.get("scaler") is not None and self.acc.scaler is not None:
            self.acc.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[self.acc.process_index % len(rngs)])
        self.step, self.position = int(state["step"]), int(state["data_position"])
        self.nonfinite_total, self.nonfinite_in_row = int(state["nonfinite_total"]), int(state["nonfinite_in_row"])
        self.last_checkpoint = path
        self._note("resuming from %s at step %d", path, self.step)
        return path

    def _note(self, message: str, *args: Any) -> None:
        if self.acc.is_main_process:  # once per run, not once per process
            logger.warning(message, *args)

    def _save(self) -> None:
        rngs = gather_object([ckpt.rng_state()])  # every process's RNG, so each resumes its own
        if self.main:
            state = {
                "step": self.step,
                "data_position": self.position,
                "epoch": self.epoch,
                "nonfinite_total": self.nonfinite_total,
                "nonfinite_in_row": self.nonfinite_in_row,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.acc.scaler.state_dict() if self.acc.scaler is not None else None,
                "rng": rngs,
                "world_size": self.acc.num_processes,
            }
            ckpt.save_checkpoint(self.out, self.step, self.model, state, self.cfg.keep_last)
        self.last_checkpoint = self.out / ckpt.checkpoint_name(self.step)
        self.acc.wait_for_everyone()

    # -- one clip ---------------------------------------------------------------------------
    def embeddings(self, clip: TrainClip, images: torch.Tensor) -> torch.Tensor:
        """(T, C, h, w) frozen encoder outputs of a clip: from the cache, or computed."""
        encode = lambda rows: self.model.encode_images(images[rows])  # noqa: E731
        if self.cache is None:
            return encode(list(range(images.shape[0])))
        fill = encode if self.cfg.feature_cache.fill else None
        return self.cache.embeddings(clip.name, clip.frame_indices.tolist(), fill)

    def clip_output(self, clip: TrainClip, generator: np.random.Generator) -> ClipLossOutput:
        """The loss of one clip (through the DDP-wrapped objective)."""
        prepared = prepare_clip(self.model, clip.frames, clip.masks)
        with self.acc.autocast():
            emb = self.embeddings(clip, prepared.images)
            return self.objective(emb.to(self.acc.device), prepared.gt, clip.annotated, generator)

    # -- one optimizer step -------------------------------------------------------------------
    def train_step(self, clips: Iterator[TrainClip]) -> Dict[str, float]:
        """Accumulate gradients over ``grad_accum * batch_size`` clips and step once."""
        micro = self.cfg.optim.grad_accum * self.cfg.optim.batch_size
        sums: Dict[str, float] = {}
        skipped = False
        for m in range(micro):
            clip = next(clips)
            gen = np.random.default_rng([self.cfg.seed, self.step, self.acc.process_index, m])
            with self.acc.accumulate(self.objective):
                out = self.clip_output(clip, gen)
                bad = torch.tensor(0.0 if torch.isfinite(out.total).item() else 1.0, device=self.acc.device)
                if self.acc.reduce(bad, reduction="sum").item() > 0:
                    # every process skips together; a zero loss keeps DDP's gradient hooks in step
                    skipped = True
                    self.acc.backward(sum(p.sum() for p in self.model.trainable_parameters()) * 0.0)
                else:
                    self.acc.backward(out.total)
                for k, v in out.terms.items():
                    sums[k] = sums.get(k, 0.0) + v / micro
        norm = math.nan
        if not skipped:
            norm = float(
                self.acc.clip_grad_norm_(self.model.trainable_parameters(), self.cfg.optim.grad_clip or math.inf)
            )
            # fp16's grad scaler skips overflowing steps itself (and adapts its scale)
            skipped = not math.isfinite(norm) and self.cfg.precision != "fp16"
        if not skipped:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        self.position += micro * self.acc.num_processes
        self.nonfinite_in_row = self.nonfinite_in_row + 1 if skipped else 0
        self.nonfinite_total += int(skipped)
        return {**sums, "grad_norm": norm, "skipped": float(skipped)}

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> Dict[str, Any]:
        """J&F of the current adapters on the first videos of the validation split."""
        return validate(self.model, self.cfg, self.step, self.val_dataset)

    def _calibrate(self) -> None:
        """Calibrate the presence head's appearance gate on the training videos (every process
        runs the same search, so all keep the same value) and log the search."""
        videos = self.videos if self.videos is not None else open_videos(self.cfg.data[0])
        record = calibrate(self.model, videos, self.cfg.calibration, self.initial_adapters, self.step)
        if self.main:
            self.log.write(record)
        self.acc.wait_for_everyone()

    def _validate_and_log(self) -> None:
        if self.main:
            self.log.write(self.validate())
        self.acc.wait_for_everyone()

    # -- the loop -----------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """Data epochs begun (the clip position over the clips per epoch)."""
        return self.position // max(1, len(self.dataset))  # type: ignore[arg-type]

    def _log_train(self, window: List[Dict[str, float]], lr: float, seconds: float) -> None:
        self.log.write_train(window, self.step, lr, seconds, self.nonfinite_total, self.epoch)

    def run(self) -> TrainResult:
        cfg, o = self.cfg, self.cfg.optim
        loader = make_loader(
            self.dataset, self.position, o.batch_size, self.acc.process_index, self.acc.num_processes, cfg.num_workers
        )
        clips = (clip for batch in loader for clip in batch)
        bar = tqdm(
            total=o.max_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not (self.main and self.progress),
            dynamic_ncols=True,
        )
        start, last_loss = time.time(), math.nan
        window: List[Dict[str, float]] = []  # steps since the last metrics line
        stop = StopRequest(enabled=self.acc.num_processes == 1)
        try:
            with stop:
                if cfg.val.every and self.step == 0:  # the curve starts at the untrained adapters
                    self._validate_and_log()
                while self.step < o.max_steps:
                    lr = float(self.scheduler.get_last_lr()[0])
                    stats = self.train_step(clips)
                    window.append(stats)
                    last_loss = stats.get("total", math.nan)
                    bar.update(1)
                    bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
                    if cfg.dump_weight_hashes:
                        dump_weight_hash(self.out, self.acc.process_index, self.step, self.model)
                    if self.step % cfg.log_every == 0 or self.step == o.max_steps or stats["skipped"]:
                        self._log_train(window, lr, time.time() - start)
                        window = []
                    if self.nonfinite_in_row >= cfg.max_nonfinite_in_row:
                        where = (
                            f"the last good checkpoint is {self.last_checkpoint}"
                            if self.last_checkpoint
                            else "no checkpoint was written"
                        )
                        raise NonFiniteLossError(
                            f"{self.nonfinite_in_row} steps in a row (up to step {self.step}) had a non-finite loss "
                            f"or gradient and were skipped; stopping ({where}). Lower optim.lr, raise optim.warmup_steps, "
                            "use precision=bf16 rather than fp16, or look for broken masks in the data."
                        )
                    if cfg.val.every and self.step % cfg.val.every == 0:
                        self._validate_and_log()
                    if self.step == o.max_steps and cfg.calibration.presence:
                        self._calibrate()  # before the last save: the adapter written is the calibrated one
                    if self.step % cfg.checkpoint_every == 0 or self.step == o.max_steps:
                        self._save()
                    if stop.requested:  # Ctrl-C during the step: it is complete now, so save it
                        if window:
                            self._log_train(window, lr, time.time() - start)
                        if self.last_checkpoint != self.out / ckpt.checkpoint_name(self.step):
                            self._save()
                        break
        except KeyboardInterrupt:  # a second Ctrl-C, or one under DDP: the last checkpoint stands
            raise TrainingInterrupted(interrupted_message(self.step, self.last_checkpoint)) from None
        finally:
            bar.close()
            curve = self._finish()
        if stop.requested and self.step < o.max_steps:
            raise TrainingInterrupted(interrupted_message(self.step, self.last_checkpoint))
        return TrainResult(
            self.step,
            self.out,
            self.last_checkpoint,
            self.nonfinite_total,
            last_loss,
            self.main,
            metrics=self.final_metrics(),
            curve=curve,
        )

    def _finish(self) -> Optional[Path]:
        """Close the log and the trackers, and draw the curve (also after an error: the run
        so far is worth a look)."""
        curve = None
        if self.metrics is not None:
            self.metrics.close()
            try:
                curve = plot_training_curve(self.out / METRICS_NAME, self.out / CURVE_NAME)
            except Exception as exc:  # a plot must not hide how training ended
                logger.warning("could not draw the training curve: %s", exc)
        self.acc.end_training()
        return curve

    def final_metrics(self) -> Dict[str, float]:
        """The numbers of the last training record and of the last validation in the log."""
        if not self.main or not (self.out / METRICS_NAME).is_file():
            return {}
        return final_metrics(self.out / METRICS_NAME)


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    dataset: Optional[VideoDataset] = None,
    val_dataset: Optional[VideoDataset] = None,
) -> TrainResult:
    """Train the adapters of ``cfg.model`` on ``cfg.data``; see the module docstring.

    Args:
        resume: continue from the newest intact checkpoint in ``cfg.output_dir`` (sizes and
            SHA-256 verified; damaged newer ones are skipped with a note). Checkpoints that
            are all damaged are an error, unless ``overwrite`` is given too.
        overwrite: without ``resume``, replace an earlier run in ``cfg.output_dir`` (its
            checkpoints, metrics log and TensorBoard folder) instead of refusing to start;
            with it, replace the run only when none of its checkpoints is intact.
        dataset: train on these videos instead of ``cfg.data`` (already checked by
            :func:`i2v.data.custom.as_video_dataset`).
        val_dataset: validate on these videos (needed with ``dataset`` when ``val.every``).
    """
    return Trainer(
        cfg, resume=resume, progress=progress, overwrite=overwrite, dataset=dataset, val_dataset=val_dataset
    ).run()
