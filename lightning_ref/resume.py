"""Resuming and reading checkpoints: a checkpoint checked before any work and read once, with
torch.load(weights_only=True) on every path; a model option that contradicts the checkpoint's refused."""

import os

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from lightning_ref.module import TwoLayerClassifier
from manualnet.validate import UsageError

# The keys every Lightning checkpoint of this model holds; a file without them is not one of ours.
CKPT_KEYS = ("state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version")


def check_checkpoint(path: str) -> dict:
    """The checkpoint at `path`, loaded as Lightning will load it (torch.load with weights_only=True), or UsageError
    saying why it can't be used: missing, unreadable (corrupt, not a torch file, or holding objects other than
    tensors and plain containers), or not a Lightning checkpoint of TwoLayerClassifier."""
    if not os.path.isfile(path):
        raise UsageError(f"ckpt_path: no such file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(
            f"ckpt_path: {path} is not a readable checkpoint (torch.load with weights_only=True raised "
            f"{type(e).__name__}): it is damaged, not a torch file, or holds more than tensors and plain containers"
        ) from None
    missing = [k for k in CKPT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UsageError(f"ckpt_path: {path} is not a Lightning checkpoint (missing {', '.join(missing)})")
    hp = ckpt["hyper_parameters"]
    if not isinstance(hp, dict) or "impl" not in hp or "hidden" not in hp:
        raise UsageError(f"ckpt_path: {path} is not a TwoLayerClassifier checkpoint (no impl/hidden hyperparameters)")
    return ckpt


def check_matches(ckpt: dict, path: str, model: TwoLayerClassifier, resume: bool) -> None:
    """UsageError unless the checkpoint's weights fit `model` (names and shapes) and, to resume a fit, it holds the
    optimizer and loop state."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:4]
        raise UsageError(f"ckpt_path: {path} does not fit this model (weights differ: {diff})")
    if resume and not all(k in ckpt for k in ("optimizer_states", "lr_schedulers", "loops")):
        raise UsageError(f"ckpt_path: {path} holds weights only; resuming a fit needs a full checkpoint (last.ckpt)")


class PreloadedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader, always with torch.load(weights_only=True) whatever the caller or the environment
    asks, and giving back the checkpoint the CLI has read already (and checked) instead of reading it again."""

    def __init__(self, preloaded: dict[str, dict]) -> None:
        super().__init__()
        self.preloaded = {os.path.realpath(k): v for k, v in preloaded.items()}

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict:
        ckpt = self.preloaded.get(os.path.realpath(path))
        return ckpt if ckpt is not None else torch.load(path, map_location=map_location, weights_only=True)


def check_model_options(ckpt: dict, path: str, given: dict[str, object]) -> dict:
    """The checkpoint's hyperparameters (for the config), after refusing a model option the user gave (`given`:
    key -> value) that contradicts them."""
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if k != "_instantiator"}
    for key, value in given.items():
        if key in hp and not same(value, hp[key]):
            raise UsageError(
                f"model.{key}: the checkpoint {path} has {hp[key]!r}, got {value!r} "
                f"(a checkpoint's model is used as it was saved: drop --model.{key} or give {hp[key]!r})"
            )
    return hp


def same(a: object, b: object) -> bool:
    """Whether two option values are equal, tuples and lists alike (a checkpoint and a parsed config hold either)."""
    return _plain(a) == _plain(b)


def _plain(v: object) -> object:
    return list(v) if isinstance(v, tuple) else v
