# tiny_resume.py with a checkpoint every iteration, SIGKILLed in the middle of
# writing checkpoint 2. Needs tests/data on PYTHONPATH (testing_hooks).
_base_ = ['./tiny_resume.py']
default_hooks = dict(checkpoint=dict(interval=1))
custom_imports = dict(imports=['densekit.runtime', 'densekit.backbones', 'densekit.necks', 'densekit.heads', 'testing_hooks'],
                      allow_failed_imports=False)
custom_hooks = [
    dict(type='densekit.RandomStateHook'),
    dict(type='densekit.NonFiniteLossHook', action='stop'),
    dict(type='SigkillDuringSave', iter=2),
]
