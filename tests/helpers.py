"""Helpers the tests share (fixtures live in conftest.py)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_SEG = ROOT / 'tests' / 'data' / 'tiny_upernet_swin.py'


def run_tool(tool: str, *args: str, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run tools/<tool>.py in a fresh interpreter, as a user would."""
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / f'{tool}.py'), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'{tool} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def run_main(capsys, tool: str, *args: str) -> tuple[str, str]:
    """tools/<tool>.py's main() in this process (no interpreter start-up):
    returns what it printed to stdout and stderr."""
    spec = importlib.util.spec_from_file_location(tool.replace('/', '_'), ROOT / 'tools' / f'{tool}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    module.main(list(args))  # its loggers are closed after the test (conftest)
    captured = capsys.readouterr()
    return captured.out, captured.err


def assert_checkpointing_matches(plain, cp, x) -> None:
    """``cp`` (``with_cp=True``, same weights as ``plain``) gives the same
    gradients for a training step on ``x``."""
    for m in (plain, cp):
        m.train()
        sum(o.square().mean() for o in m(x)).backward()
    for (name, a), b in zip(plain.named_parameters(), cp.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def assert_drop_path_random_in_training_only(model, x) -> None:
    """Two training passes with different seeds differ; eval passes are equal."""
    model.train()
    torch.manual_seed(1)
    a = model(x)[-1]
    torch.manual_seed(2)
    b = model(x)[-1]
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(x)[-1], model(x)[-1])


def input_and_bias_table_grads(model, run, x) -> list[torch.Tensor]:
    """Gradients of ``x`` and of every ``relative_position_bias_table`` of
    ``model`` after backpropagating a fixed random projection of ``run(x)``'s
    outputs: the same projection for every model, so two implementations of
    one network can be compared gradient for gradient."""
    x = x.clone().requires_grad_()
    outs = run(x)
    weights = torch.Generator().manual_seed(1)
    sum((o * torch.randn(o.shape, generator=weights)).sum() for o in outs).backward()
    tables = [p.grad for n, p in model.named_parameters() if n.endswith('relative_position_bias_table')]
    return [x.grad, *tables]


def perturb(model: torch.nn.Module) -> None:
    """Non-trivial weights and BatchNorm statistics (seeded), so parity is not
    between two near-identity random inits."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
