# tiny_resume.py, SIGKILLed right after iteration 3 (checkpoint 2 written).
# Needs tests/data on PYTHONPATH for the test-only testing_hooks module.
_base_ = ['./tiny_resume.py']
custom_imports = dict(imports=['densekit.runtime', 'densekit.backbones', 'densekit.necks', 'densekit.heads', 'testing_hooks'],
                      allow_failed_imports=False)
custom_hooks = [
    dict(type='densekit.RandomStateHook'),
    dict(type='densekit.NonFiniteLossHook', action='stop'),
    dict(type='SigkillAfterIter', iter=3),
]
