"""DDP through Lightning: 2 CPU processes (gloo) with per-process batch B/2 end with the weights of one process with
batch B, within float32 tolerance; and the hand-written backward gives DDP the gradient layout its buckets need.

data.batch_size is per process (Lightning's convention): the global batch is batch_size * devices * num_nodes.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from lightning_ref.cli import main
from manualnet import TwoLayerNet

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_args(root: Path, *extra: str) -> list[str]:
    """fit on the fake CIFAR-10, 2 epochs, hidden 16."""
    args = ["fit", "--data.dataset", "cifar10", "--data.root", str(root), "--data.download", "false"]
    args += ["--data.val_size", "100", "--model.hidden", "16", "--trainer.max_epochs", "2"]
    return args + ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", *extra]


def last_ckpt(cwd: Path, stdout: str) -> Path:
    """The run's last.ckpt, from the metrics path fit prints last."""
    metrics = Path(cwd, stdout.strip().splitlines()[-1].removeprefix("metrics: "))
    return metrics.parent / "checkpoints" / "last.ckpt"


def test_ddp_on_two_processes_ends_with_the_weights_of_one_process_with_the_same_global_batch(
    fake_cifar10_cached, tmp_path, monkeypatch, capsys
):
    # DDP in scripts/train.py's own processes; the single-process run here, in this one (a Lightning import spared).
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "scripts" / "train.py")]
    cmd += fit_args(
        fake_cifar10_cached, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--data.batch_size", "50"
    )
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = last_ckpt(tmp_path, proc.stdout)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["manualnet-train"])
    with torch.random.fork_rng():
        main(fit_args(fake_cifar10_cached, "--trainer.devices", "1", "--data.batch_size", "100"))
    single = last_ckpt(tmp_path, capsys.readouterr().out)
    a = torch.load(ddp, weights_only=True)
    b = torch.load(single, weights_only=True)
    assert a["global_step"] == b["global_step"] == 10  # 500 images / global batch 100, 2 epochs
    init = TwoLayerNet(3072, 16, 10, seed=0)
    for name, w in a["state_dict"].items():
        torch.testing.assert_close(w, b["state_dict"][name], rtol=1e-5, atol=1e-6)
        moved = (w - getattr(init, name.removeprefix("net."))).abs().max().item()
        assert moved > 1e-3, name  # training moved the weights far more than the tolerance


def test_manual_gradients_have_the_parameters_strides_even_for_a_strided_upstream_gradient():
    # DDP's bucket views have the parameters' strides; w1 and w2 are stored transposed (nn.Linear's layout), so
    # their gradients must be too, and the biases' contiguous
    net = TwoLayerNet(12, 5, 3, seed=0)
    x = torch.randn(8, 12)
    s2 = net(x)
    ds2 = torch.randn(3, 8).T  # non-contiguous incoming gradient
    s2.backward(ds2)
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.stride() == p.stride(), name
        assert p.grad.is_contiguous() == p.is_contiguous() and p.grad.T.is_contiguous() == p.T.is_contiguous(), name
