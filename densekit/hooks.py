"""Hooks: exact resume and non-finite losses (reliability), and the test
images drawn with ground truth and prediction (``tools/test.py --show-dir``).

mmengine restores weights, optimizer, schedulers, the iteration counter and
the data order on ``--resume``, but re-seeds the random generators instead of
restoring them, so random augmentation and drop-path after a resume differ
from an uninterrupted run (:class:`RandomStateHook`). mmdet's
``CheckInvalidLossHook`` asserts after the optimizer step (the weights are
already NaN) and cannot skip a step (:class:`NonFiniteLossHook`).
"""
from __future__ import annotations

import os
import os.path as osp
import random
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from .registry import HOOKS


def get_rng_state() -> dict:
    """The state of every generator training draws from (python, numpy,
    torch CPU and, if present, CUDA)."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfter:
    """Wraps the train loop's data iterator: after ``skip`` batches (mmengine's
    replay of the batches already trained on) restores ``state``, so the next
    batch is drawn exactly as in the uninterrupted run."""

    def __init__(self, iterator, skip: int, state: dict):
        self._iterator, self._left, self._state = iterator, skip, state

    def __next__(self):
        batch = next(self._iterator)
        if self._left > 0:
            self._left -= 1
            if self._left == 0:
                set_rng_state(self._state)
        return batch

    def __iter__(self):
        return self

    def __getattr__(self, name):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves the random generators' state in each checkpoint (``rng_state``)
    and restores it on resume, at the point where the checkpoint was taken.

    Iteration-based loops first replay the trained batches through the
    pipeline (which draws random numbers), so the state is restored after that
    replay; epoch-based loops resume at an epoch boundary and restore at once.
    States are per process: in distributed runs the main process's state is
    saved and every rank restores it (ranks share the seed by default).
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._loaded: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get('rng_state')

    def before_train_epoch(self, runner) -> None:
        if self._loaded is None:
            return
        loop = runner.train_loop
        if loop.iter > 0 and isinstance(loop, IterBasedTrainLoop):
            # IterBasedTrainLoop: replays loop.iter batches next, then trains
            loop.dataloader_iterator = _RestoreAfter(loop.dataloader_iterator, loop.iter, self._loaded)
        elif loop.iter > 0:
            set_rng_state(self._loaded)
        self._loaded = None


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Checks the total loss before the backward pass.

    Args:
        action: ``'stop'`` raises ``FloatingPointError`` naming the iteration
            and every loss term; nothing is updated or saved, so the last
            checkpoint is the last good state. ``'skip'`` logs a warning and
            skips that optimizer step (the iteration, schedulers and data
            still advance).

    Under DDP the ranks agree (all-reduce) so that all stop or skip together.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: Literal['stop', 'skip'] = 'stop') -> None:
        if action not in ('stop', 'skip'):
            raise ValueError(f"NonFiniteLossHook: action must be 'stop' or 'skip', got {action!r}")
        self.action = action
        self._bad: str | None = None

    def before_train(self, runner) -> None:
        # The check sits between mmengine's parse_losses and update_params
        # (backward + step): wrap both on the instances.
        model = getattr(runner.model, 'module', runner.model)
        parse_losses = model.parse_losses
        optim_wrapper = runner.optim_wrapper
        update_params = optim_wrapper.update_params

        def checked_parse_losses(losses):
            loss, log_vars = parse_losses(losses)
            self._bad = self._check(runner, loss, log_vars)
            return loss, log_vars

        def checked_update_params(loss, *args, **kwargs):
            if self._bad is None:
                return update_params(loss, *args, **kwargs)
            print_log(f'NonFiniteLossHook: skipped the optimizer step of {self._bad}',
                      logger='current', level=30)
            optim_wrapper.zero_grad()

        model.parse_losses = checked_parse_losses
        optim_wrapper.update_params = checked_update_params

    def _check(self, runner, loss: torch.Tensor, log_vars: dict) -> str | None:
        bad = (~torch.isfinite(loss.detach())).any().float()  # on the loss's device (NCCL)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if not bad:
            return None
        terms = ', '.join(f'{k}={float(v):.4g}' for k, v in log_vars.items())
        what = f'iteration {runner.iter + 1}: non-finite loss ({terms})'
        if self.action == 'stop':
            raise FloatingPointError(
                f'{what}. Training stopped before the update; the last checkpoint in '
                f'{runner.work_dir} is the last good state. Use '
                "NonFiniteLossHook(action='skip') to skip such steps instead.")
        return what


@HOOKS.register_module()
class DrawPredictionsHook(Hook):
    """Draws every test image with its ground truth and prediction, through
    the config's own visualizer (mmseg's ``SegLocalVisualizer``, mmdet's
    ``DetLocalVisualizer``, mmpretrain's ``UniversalVisualizer``), to
    ``out_dir/<image name>.png``, and/or shows it in a window.

    One rule for the three tasks, where the toolboxes' hooks each write
    elsewhere (vis backends, a timestamped folder) and mmpretrain's draws one
    image in 5000. Side-by-side pictures (segmentation, detection) get a caption
    strip: "ground truth" over the left half, "prediction" over the right;
    mmpretrain writes both labels as text on the image.

    Args:
        out_dir: folder for the PNGs (created); None to only show.
        show: show each picture in a window (needs a display).
        wait_time: seconds each shown picture stays.
        score_thr: lowest detection score drawn.
    """

    priority = 'NORMAL'

    def __init__(self, out_dir: str | None = None, show: bool = False, wait_time: float = 0.,
                 score_thr: float = 0.3) -> None:
        self.out_dir, self.show, self.wait_time, self.score_thr = out_dir, show, wait_time, score_thr
        self._names: set[str] = set()

    def before_test(self, runner) -> None:
        self._names = set()
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        from .inference import png_name
        for sample in outputs or []:
            path = sample.metainfo.get('img_path')
            if path is None:
                continue
            name = png_name(path, self._names)
            drawn = self._draw(runner.visualizer, sample, _read_rgb(path), name)
            if self.out_dir:
                import mmcv
                mmcv.imwrite(drawn[..., ::-1], osp.join(self.out_dir, name))
            if self.show:
                runner.visualizer.show(drawn, win_name=name, wait_time=self.wait_time)

    def after_test(self, runner) -> None:
        if self.out_dir:
            print_log(f'DenseKit: drew {len(self._names)} test images (ground truth | prediction) '
                      f'to {self.out_dir}/', logger='current')

    def _draw(self, visualizer, sample, image: np.ndarray, name: str) -> np.ndarray:
        import tempfile

        import mmcv
        # the toolboxes draw into out_file (without one, into their vis backends' folders)
        with tempfile.TemporaryDirectory() as tmp:
            out = osp.join(tmp, 'drawn.png')
            side_by_side = not hasattr(visualizer, 'visualize_cls')
            if not side_by_side:  # mmpretrain: both labels written on the image
                small = min(image.shape[:2]) < 224  # its text is sized for ImageNet-sized images
                visualizer.visualize_cls(image, sample, draw_gt=True, draw_pred=True,
                                         resize=224 if small else None, out_file=out)
            else:
                kwargs = {'pred_score_thr': self.score_thr} if 'pred_instances' in sample else {}
                visualizer.add_datasample(name, image, sample, draw_gt=True, draw_pred=True, show=False,
                                          out_file=out, **kwargs)
            drawn = mmcv.imread(out, channel_order='rgb')
        if side_by_side and drawn.shape[1] == 2 * image.shape[1]:  # both drawn: ground truth | prediction
            drawn = caption(drawn, ('ground truth', 'prediction'))
        return drawn


def _read_rgb(path: str) -> np.ndarray:
    import mmcv
    from mmengine.fileio import get
    return mmcv.imfrombytes(get(path), channel_order='rgb')


def caption(image: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """``image`` (H, W, 3) made of ``len(labels)`` equal panels side by side,
    with a white strip above naming each panel: (H + h, W, 3)."""
    import cv2
    width = image.shape[1] // len(labels)
    scale = max(0.35, min(1.0, width / 400))
    height = int(24 * scale) + 6
    strip = np.full((height, image.shape[1], 3), 255, dtype=image.dtype)
    for i, label in enumerate(labels):
        cv2.putText(strip, label, (i * width + 4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, image], axis=0)


@HOOKS.register_module()
class BatchNormInputHook(Hook):
    """Stop at the first BatchNorm that would train on one value per channel.

    torch raises "Expected more than 1 value per channel when training" from
    inside the model (UPerHead's pool-scale-1 branch at batch 1, a stem on a
    tiny input) without saying which layer or what to change. This hook
    checks every training BatchNorm's input (batch x height x width > 1) and
    raises a ``ValueError`` naming the layer, the batch size setting and the
    fixes. SyncBatchNorm in a multi-process run counts the whole batch and is
    not checked."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        batch = runner.cfg.get('train_dataloader', {}).get('batch_size')
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not (
                    synced and isinstance(module, torch.nn.SyncBatchNorm)):
                module.register_forward_pre_hook(_one_value_check(name, batch))


def _one_value_check(name: str, batch):
    def check(module, args):
        x = args[0] if args else None
        if module.training and torch.is_tensor(x) and x.dim() > 1 and x.numel() // max(x.shape[1], 1) <= 1:
            raise ValueError(
                f'BatchNorm layer {name} gets one value per channel in training (input {tuple(x.shape)}, '
                f'train_dataloader.batch_size={batch} per process): use a batch of >= 2 images per '
                "process, GroupNorm (the layer's norm_cfg=dict(type='GN', num_groups=32)), "
                'or SyncBN across several GPUs')
    return check


@HOOKS.register_module()
class FirstIterationHook(Hook):
    """One console line when the first training iteration of a run is done.

    mmengine's ``LoggerHook`` prints its first progress line only after
    ``interval`` iterations (50 in the recipes, minutes on a CPU), so a run
    looks stuck until then. This line, through the ``DenseKit`` prefix the
    console keeps (:data:`densekit.cli.CONSOLE_INFO`), gives the first
    iteration's loss and seconds (data loader start included) and when the
    next progress line comes. Nothing when the logger prints every iteration."""

    priority = 'BELOW_NORMAL'

    def before_train(self, runner) -> None:
        import time
        self._start, self._done = time.perf_counter(), False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        import time
        if self._done:
            return
        self._done = True
        loggers = [h for h in runner.hooks if type(h).__name__ == 'LoggerHook']
        interval = getattr(loggers[0], 'interval', 1) if loggers else 1
        if interval <= 1 or runner.rank != 0:
            return
        loss = (outputs or {}).get('loss')
        if torch.is_tensor(loss):
            loss = loss.detach().item()  # still part of the graph: float() would warn
        loss = f'loss {loss:.4g}, ' if isinstance(loss, (int, float)) else ''
        runner.logger.info(f'DenseKit: training runs: iteration {runner.iter + 1}/{runner.max_iters} done '
                           f'({loss}{time.perf_counter() - self._start:.1f} s with the data loader\'s start); '
                           f'progress every {interval} iterations')
