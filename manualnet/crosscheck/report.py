"""The report of check_function: one Result per (check, dtype, device), and the verdict."""

from dataclasses import dataclass

from manualnet.crosscheck.diagnosis import Symptom, diagnose

STATUSES = ("passed", "warning", "failed", "n/a")


@dataclass(frozen=True)
class Result:
    """One cell of the matrix: one check in one dtype on one device.

    status: "passed"; "warning" (legal but costly, or nothing compiled to check); "failed" (wrong values, a crash,
    a transform that breaks the Function); "n/a" (the note says why). max_rel is fn's error against the float64
    truth, ref_rel the reference's own error in the same dtype (None where nothing was measured). tolerance: the
    one applied (the rule's floors with their dtype where autocast applied another's). symptoms: what
    Report.diagnosis groups (failed and warned cells only).
    """

    check: str
    dtype: str
    device: str
    status: str
    max_abs: float | None
    max_rel: float | None
    ref_rel: float | None
    tolerance: str
    seconds: float
    note: str
    symptoms: tuple[Symptom, ...] = ()


@dataclass(frozen=True)
class Report:
    """The results of check_function, one per (check, dtype, device)."""

    name: str
    results: tuple[Result, ...]
    strict: bool = False  # warnings count as failures

    @property
    def ok(self) -> bool:
        """True when no check failed (and, with strict, none warned)."""
        bad = ("failed", "warning") if self.strict else ("failed",)
        return all(r.status not in bad for r in self.results)

    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == "failed"]

    def warnings(self) -> list[Result]:
        return [r for r in self.results if r.status == "warning"]

    def status(self, check: str, dtype: str | None = None) -> set[str]:
        """The statuses of one check (in one dtype, e.g. "float64"), over the devices."""
        return {r.status for r in self.results if r.check == check and dtype in (None, r.dtype)}

    def verdict(self) -> str:
        """ "ok", or "FAILED: <checks>", with "warnings: <checks>" after either."""
        failing = sorted({r.check for r in self.failed()})
        warning = sorted({r.check for r in self.warnings()})
        verdict = "ok" if not failing else "FAILED: " + ", ".join(failing)
        if warning:
            verdict += ("; " if failing else " (") + "warnings: " + ", ".join(warning) + ("" if failing else ")")
        return verdict

    def diagnosis(self) -> list[str]:
        """What a person reads first: one line per distinct symptom (failures, then warnings) with the dtypes and
        checks where it shows and what to look at; empty when every check passed or was n/a."""
        return diagnose(self.results)

    def summary(self) -> str:
        """One line: the name, the verdict and the first symptom."""
        first = self.diagnosis()[:1]
        return f"{self.name}: {self.verdict()}" + (f": {first[0]}" if first else "")

    def markdown(self) -> str:
        """A heading with the Function's name and the verdict, the diagnosis, then the matrix as a Markdown table."""
        lines = [f"### {self.name}: {self.verdict()}", ""]
        diagnosis = self.diagnosis()
        if diagnosis:
            lines += [f"- {line}" for line in diagnosis] + [""]
        lines += [
            "| check | dtype | device | result | fn rel err | ref rel err | tolerance | time (s) | note |",
            "| --- | --- | --- | --- | ---: | ---: | --- | ---: | --- |",
        ]
        for r in self.results:
            errs = ["" if e is None else f"{e:.2e}" for e in (r.max_rel, r.ref_rel)]
            result = {"failed": "**FAILED**", "warning": "*warning*"}.get(r.status, r.status)
            note = r.note.replace("|", "\\|").replace("\n", " ")
            cells = (r.check, r.dtype, r.device, result, *errs, r.tolerance, f"{r.seconds:.2f}", note)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise AssertionError when a check failed (or warned, with strict): its first line is the summary (the
        failed checks and the first symptom), then the diagnosis and the table."""
        __tracebackhide__ = True  # pytest: the failure points at the caller, not here
        if not self.ok:
            raise AssertionError(self.summary() + "\n\n" + self.markdown())
