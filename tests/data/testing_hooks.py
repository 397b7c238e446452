"""Test-only hooks: crash a run on purpose, inject a NaN, record losses (imported by
the tests/data configs through PYTHONPATH=tests/data)."""
import os
import signal

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SigkillAfterIter(Hook):
    """SIGKILLs the process right after iteration ``iter`` (checkpoints of that
    iteration included: the hook runs after CheckpointHook)."""

    priority = 'LOWEST'

    def __init__(self, iter: int):
        self.iter = iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iter:  # runner.iter counts finished iterations
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class SigkillDuringSave(Hook):
    """While saving the checkpoint of iteration ``iter``, writes a few bytes
    of it and SIGKILLs the process: a crash in the middle of torch.save."""

    def __init__(self, iter: int):
        self.iter = iter

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.iter + 1 != self.iter:  # runner.iter counts finished iterations
            return

        def partial_save(obj, f, *args, **kwargs):
            f.write(b'PK\x03\x04 partial checkpoint')
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = partial_save


@HOOKS.register_module()
class NaNLossFromIter(Hook):
    """Makes the decode head's loss NaN from iteration ``iter`` on."""

    def __init__(self, iter: int):
        self.iter = iter

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iter:
            model = getattr(runner.model, 'module', runner.model)
            model.decode_head.loss_decode.loss_weight = float('nan')


@HOOKS.register_module()
class RecordLosses(Hook):
    """Appends each iteration's total loss to work_dir/losses_rank<RANK>.txt
    (mmengine logs rank 0's loss only)."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        with open(f'{runner.work_dir}/losses_rank{runner.rank}.txt', 'a') as f:
            f.write(f"{float(outputs['loss']):.9g}\n")


@HOOKS.register_module()
class WeightsBeforeTraining(Hook):
    """Saves the model's state dict as training starts (after ``load_from``)
    to work_dir/before_train.pth."""

    def before_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        torch.save(model.state_dict(), f'{runner.work_dir}/before_train.pth')
