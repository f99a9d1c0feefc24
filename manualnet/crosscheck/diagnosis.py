"""What a person reads before the matrix: each distinct symptom once, with where it shows and what to look at.

A check records its failures as Symptoms (a value off the truth, an exception, anything else) beside the per-cell
notes; the Report groups equal symptoms over checks, dtypes and devices into one line each. Exceptions are placed at
the innermost frame of the user's code, not in PyTorch's frames or the harness's.
"""

import os
import re
import sysconfig
import traceback
from dataclasses import dataclass

import torch

# Frames from these directories are PyTorch's, the harness's or Python's own: never where the user's bug is.
_NOT_USER = tuple(
    os.path.join(os.path.realpath(d), "")
    for d in (os.path.dirname(torch.__file__), os.path.dirname(__file__), sysconfig.get_paths()["stdlib"])
)

# An exception's message -> what the user can change. Only where the fix is clear from the message alone.
HINTS = (
    (
        "view size is not compatible with input tensor's size and stride",
        "use .reshape (or .contiguous() first): inputs and incoming gradients may be non-contiguous",
    ),
    (
        "modified by an inplace operation",
        "a tensor saved for backward, or the incoming gradient, is modified in place: work on a copy",
    ),
    ("a leaf Variable that requires grad is being used in an in-place operation", "do not modify inputs in place"),
    (
        "must override the setup_context staticmethod",
        "torch.func needs forward(*inputs) and a separate setup_context(ctx, inputs, output)",
    ),
    (".item()", "no .item() or Python branch on a tensor's value inside the Function (vmap, compile)"),
    (
        "same dtype",
        "under autocast the incoming gradient comes in the autocast dtype: cast the saved tensors to it",
    ),
)


@dataclass(frozen=True)
class Symptom:
    """One thing found wrong (or warned about) by one check in one dtype.

    kind: "off" (a value off the float64 truth by `rel`), "none" (no gradient where the reference has one),
    "raises" (fn raised; `subject` is the exception), "reference raises", "other" (a shape, a count, gradcheck's
    verdict) or "warning".
    subject: what is wrong, e.g. "d(b)", "output 0", "RuntimeError: view size is not compatible ...".
    where: for an exception, the user's file:line, function and source line.
    hint: what to change or where to look, when one is clear.
    """

    kind: str
    subject: str
    rel: float | None = None
    where: str = ""
    hint: str = ""


def subject_of(what: str) -> str:
    """The quantity a comparison label is about: "general non-contiguous d(b)" -> "d(b)", "x jvp output 0" ->
    "jvp output 0"; the label itself when it names none."""
    grads = re.findall(r"d\([^()]*\)", what)
    outputs = re.findall(r"output \d+", what)
    subject = grads[-1] if grads else outputs[-1] if outputs else what
    return f"jvp {subject}" if ("jvp" in what or "jacfwd" in what) and subject != what else subject


def user_frame(e: BaseException) -> str:
    """'file.py:54 in backward: `source line`' for the innermost frame of e's traceback outside torch, the
    harness and the standard library; "torch's file.py:798 (no frame of yours)" when there is none."""
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return ""
    mine = [f for f in frames if not os.path.realpath(f.filename).startswith(_NOT_USER)]
    if not mine:
        f = frames[-1]
        path = os.path.realpath(f.filename)
        owner = next(
            o for d, o in zip(_NOT_USER, ("torch's", "the harness's", "Python's"), strict=True) if path.startswith(d)
        )
        return f"{owner} {os.path.basename(f.filename)}:{f.lineno} (no frame of yours)"
    f = mine[-1]
    line = f" `{f.line.strip()}`" if f.line else ""
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}{':' if line else ''}{line}"


def hint_for(message: str) -> str:
    return next((hint for pattern, hint in HINTS if pattern in message), "")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def raised(e: BaseException, kind: str = "raises") -> Symptom:
    """The Symptom of an exception: its type and first sentence, the user's frame, and a hint from HINTS."""
    message = first_line(e)
    sentence = message.split(". ")[0].rstrip(".")
    return Symptom(kind, f"{type(e).__name__}: {sentence}", where=user_frame(e), hint=hint_for(message))


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _rel(rels: list[float]) -> str:
    lo, hi = min(rels), max(rels)
    return f"{hi:.1e}" if hi <= 1.5 * lo else f"{lo:.1e} to {hi:.1e}"


def _line(kind: str, subject: str, where: str, seen: dict) -> str:
    """One symptom with where it shows: '<what>: in <dtypes>, in <checks>; <hint>'."""
    places = _listed(seen["columns"])
    checks = ", ".join(seen["checks"])
    hints = "".join(f"; {h}" for h in seen["hints"])
    if kind == "off":
        off = f"{_rel(seen['rels'])} relative off the reference" if seen["rels"] else "off finite differences"
        return f"{subject}: {off} in {places}, in {checks}{hints}"
    if kind == "none":
        name = subject.removeprefix("d(").removesuffix(")")
        hints += f"; pass no_grad=[{name!r}] if it gets no gradient on purpose" if subject.startswith("d(") else ""
        return f"{subject}: no gradient (None), the reference has one; in {places}, in {checks}{hints}"
    what = {"raises": "raises ", "reference raises": "the reference raises ", "warning": "warning: "}.get(kind, "")
    at = f" at {where}" if where else ""
    return f"{what}{subject}{at}; in {places}, in {checks}{hints}"


def diagnose(results, most: int = 8) -> list[str]:
    """One line per distinct symptom of the failed (then the warned) results, in the order first seen: where it
    shows (dtypes, devices when several, checks) and the hint. At most `most` lines, then a count of the rest."""
    devices = {r.device for r in results}
    groups: dict[tuple, dict] = {}
    for status in ("failed", "warning"):
        for r in results:
            if r.status != status:
                continue
            column = r.dtype if len(devices) == 1 else f"{r.dtype} on {r.device}"
            for s in r.symptoms:
                if (s.kind == "warning") != (status == "warning"):
                    continue
                # An exception's numbers and tensor types differ by dtype (version counters, FloatTensor)
                same = re.sub(r"torch\.\w+Tensor|\d+", "#", s.subject) if "raises" in s.kind else s.subject
                seen = groups.setdefault(
                    (s.kind, same, s.where),
                    {"subject": s.subject, "columns": [], "checks": [], "rels": [], "hints": []},
                )
                for part, value in (("columns", column), ("checks", r.check), ("hints", s.hint)):
                    if value and value not in seen[part]:
                        seen[part].append(value)
                if s.rel is not None:
                    seen["rels"].append(s.rel)
    order = list(dict.fromkeys(r.dtype if len(devices) == 1 else f"{r.dtype} on {r.device}" for r in results))
    for seen in groups.values():
        seen["columns"].sort(key=order.index)
    lines = [_line(kind, seen["subject"], where, seen) for (kind, _, where), seen in groups.items()]
    if len(lines) > most:
        lines = lines[:most] + [f"... and {len(lines) - most} more symptoms: see the notes in the table"]
    return lines
