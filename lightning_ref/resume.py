"""Resuming and reading checkpoints: a checkpoint checked before any work and read once, with
torch.load(weights_only=True) on every path; a model or data option that contradicts the checkpoint's refused."""

import os

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from lightning_ref.errors import UsageError
from lightning_ref.module import TwoLayerClassifier

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
        got = f"keys {_some(ckpt)}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise UsageError(
            f"ckpt_path: {path} is not a Lightning checkpoint (missing {', '.join(missing)}; it holds {got})"
        )
    hp = ckpt["hyper_parameters"]
    if not isinstance(hp, dict) or "impl" not in hp or "hidden" not in hp:
        got = f"hyperparameters {_some(hp)}" if isinstance(hp, dict) else f"hyperparameters of type {type(hp).__name__}"
        raise UsageError(
            f"ckpt_path: {path} is not a TwoLayerClassifier checkpoint (no impl/hidden hyperparameters; it holds {got})"
        )
    return ckpt


def _some(d: dict, n: int = 6) -> str:
    """The first n keys of d, for a message: "state, epoch, ... (9 in all)"."""
    keys = [str(k) for k in d]
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "") if keys else "nothing"


def holds(ckpt: dict) -> str:
    """What a checked checkpoint holds, in words: "TwoLayerClassifier (impl manual, hidden 16) of fashion-mnist
    (root data) after 8 optimizer steps"."""
    hp, data = ckpt["hyper_parameters"], ckpt.get("datamodule_hyper_parameters") or {}
    what = f"TwoLayerClassifier (impl {hp['impl']}, hidden {hp['hidden']})"
    if data.get("dataset"):
        what += f" of {data['dataset']} (root {data.get('root')})"
    elif hp.get("input_shape") is not None:
        what += f" of {tuple(hp['input_shape'])} images in {hp.get('num_classes')} classes"
    return f"{what} after {ckpt['global_step']} optimizer steps"


def check_matches(ckpt: dict, path: str, model: TwoLayerClassifier, resume: bool) -> None:
    """UsageError unless the checkpoint's weights fit `model` (names and shapes) and, to resume a fit, it holds the
    optimizer and loop state."""
    hp, shape = ckpt["hyper_parameters"], getattr(model, "input_shape", None)
    saved = (hp.get("input_shape"), hp.get("num_classes"))
    if None not in saved and (tuple(saved[0]), saved[1]) != (tuple(shape), model.hparams.num_classes):
        raise UsageError(
            f"ckpt_path: {path} holds a net for {tuple(saved[0])} images in {saved[1]} classes; the data set here "
            f"gives {tuple(shape)} images in {model.hparams.num_classes} classes (give the data set it was trained "
            "on: --data.dataset)"
        )
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


def checkpoint_options(
    saved: dict, path: str, group: str, given: dict[str, object], free: set[str] = frozenset()
) -> dict:
    """The options of `group` the checkpoint saved (`saved`: key -> value) that the user did not give, after refusing
    one the user gave (`given`: key -> value) that contradicts the checkpoint, unless it is in `free` (it may
    differ)."""
    for key, value in given.items():
        if key in saved and key not in free and not same(value, saved[key]):
            raise UsageError(
                f"{group}.{key}: the checkpoint {path} has {saved[key]!r}, got {value!r} "
                f"(a checkpoint's {group} is used as it was saved: drop --{group}.{key} or give {saved[key]!r})"
            )
    return {k: v for k, v in saved.items() if k not in given}


def same(a: object, b: object) -> bool:
    """Whether two option values are equal, tuples and lists alike (a checkpoint and a parsed config hold either)."""
    return _plain(a) == _plain(b)


def _plain(v: object) -> object:
    return list(v) if isinstance(v, tuple) else v
