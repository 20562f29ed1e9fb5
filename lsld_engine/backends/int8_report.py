"""int8 engine folders as the backends read them: the fidelity report (``fidelity.json``), its gate,
and the checks made before an int8 folder loads (:mod:`lsld_engine.backends.quantize` builds them).

Kept apart from the builder so the ONNX backend can check a folder without importing the quantizer
(which measures fidelity through the ONNX backend).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lsld_engine.errors import LsldError

log = logging.getLogger("lsld_engine.backends.quantize")

REPORT_NAME = "fidelity.json"
MANIFEST_NAME = "manifest.json"
#: The sub-folder of an export folder that ``lsld-engine export --precision int8`` writes.
INT8_SUBDIR = "int8"
#: Gate defaults: an int8 engine whose CLIP or CLAP cosine to fp32 is below these is refused.
MIN_MEAN_COSINE: float = 0.995
MIN_COSINE: float = 0.98


class FidelityError(LsldError, RuntimeError):
    """An int8 engine is below the fidelity gate, has no report, or its report does not match its files."""


@dataclass
class TowerFidelity:
    """Cosine of the int8 embedding to the fp32 one over ``items`` frames (CLIP) or segments (CLAP)."""

    items: int
    min_cosine: float
    mean_cosine: float
    quantized_nodes: int


@dataclass
class FidelityReport:
    """What ``fidelity.json`` holds (see the module docstring). ``han_max_prob_diff``: largest
    absolute difference of any HAN output probability (fp32 HAN on fp32 features vs the int8 folder's
    HAN on int8 features); ``event_agreement``: share of equal (window, segment, modality, class)
    event cells at thresholds 0.5 over ``event_cells`` cells. Both None without a HAN."""

    method: str
    format: str
    clips: list[str]
    generated_clips: bool
    towers: dict[str, TowerFidelity]
    han_quantized: bool
    han_max_prob_diff: float | None
    event_agreement: float | None
    event_cells: int
    min_mean_cosine: float
    min_cosine: float
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of the int8 folder's files
    onnxruntime: str = ""
    seconds: float = 0.0

    # --- the gate ---

    def failures(self, min_mean_cosine: float | None = None, min_cosine: float | None = None) -> list[str]:
        """Why this engine is below the gate (empty when it passes)."""
        mm = self.min_mean_cosine if min_mean_cosine is None else min_mean_cosine
        mn = self.min_cosine if min_cosine is None else min_cosine
        bad = []
        for net, t in self.towers.items():
            if not t.mean_cosine >= mm:  # `not >=`: a NaN cosine fails too
                bad.append(f"{net} mean cosine {t.mean_cosine:.4f} < {mm}")
            if not t.min_cosine >= mn:
                bad.append(f"{net} min cosine {t.min_cosine:.4f} < {mn}")
        return bad

    @property
    def passed(self) -> bool:
        return not self.failures()

    # --- text ---

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "FidelityReport":
        d = json.loads(text)
        d.pop("passed", None)
        d["towers"] = {k: TowerFidelity(**v) for k, v in d["towers"].items()}
        return cls(**d)

    def format_text(self) -> str:
        """Human-readable lines (``lsld-engine export --precision int8`` prints them)."""
        src = "generated" if self.generated_clips else "calibration"
        lines = [f"int8 fidelity ({self.method}, {self.format}) on {len(self.clips)} {src} clips, vs fp32:"]
        for net, t in self.towers.items():
            what = "frames" if net == "clip_image" else "segments"
            lines.append(f"  {net:<11} cosine min {t.min_cosine:.5f} mean {t.mean_cosine:.5f} over {t.items} "
                         f"{what} ({t.quantized_nodes} int8 nodes)")
        if self.event_agreement is not None:
            lines.append(f"  han ({'int8' if self.han_quantized else 'fp32'})  largest probability difference "
                         f"{self.han_max_prob_diff:.4f}; events equal in {100 * self.event_agreement:.2f} % of "
                         f"{self.event_cells} segment cells")
        bad = self.failures()
        lines.append(f"  gate (mean >= {self.min_mean_cosine}, min >= {self.min_cosine}): "
                     + ("passed" if not bad else "FAILED: " + "; ".join(bad)))
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for a run summary."""
        towers = ", ".join(f"{'CLIP' if n == 'clip_image' else 'CLAP'} cosine mean {t.mean_cosine:.5f} "
                           f"min {t.min_cosine:.5f}" for n, t in self.towers.items())
        events = (f", events {100 * self.event_agreement:.1f} % equal" if self.event_agreement is not None else "")
        return f"{towers}{events}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()



def gate(report: FidelityReport, folder: str | os.PathLike, min_mean_cosine: float | None = None,
         min_cosine: float | None = None) -> None:
    """Raise :class:`FidelityError` (one line) when ``report`` is below the gate."""
    bad = report.failures(min_mean_cosine, min_cosine)
    if bad:
        raise FidelityError(f"int8 engine {folder} is below the fidelity gate ({'; '.join(bad)}; report "
                            f"{Path(folder) / REPORT_NAME}): refused; --force uses it anyway")


def read_report(folder: str | os.PathLike) -> FidelityReport | None:
    """The fidelity report of an int8 folder, None for a folder without one."""
    path = Path(folder) / REPORT_NAME
    if not path.is_file():
        return None
    try:
        return FidelityReport.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as e:
        raise FidelityError(f"{path}: unreadable fidelity report ({e}); rebuild the int8 engine") from None


def is_int8_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / REPORT_NAME).is_file()


def int8_folder(engine_dir: str | os.PathLike) -> Path:
    """The int8 folder of ``engine_dir``: itself when it is one, else its ``int8/`` sub-folder."""
    d = Path(engine_dir).expanduser()
    for cand in (d, d / INT8_SUBDIR):
        if is_int8_folder(cand):
            return cand
    raise FidelityError(f"no int8 engine in {d} (no {REPORT_NAME} there or in {d / INT8_SUBDIR}): make one with "
                        f"`lsld-engine export --precision int8 --out {d}`")


def check_folder(folder: str | os.PathLike, *, force: bool = False, min_mean_cosine: float | None = None,
                 min_cosine: float | None = None, verify_files: bool = True) -> FidelityReport | None:
    """Before loading ``folder``: when it is an int8 folder, its report must match its files (sha256)
    and pass the gate (the thresholds it was built with unless given), else :class:`FidelityError`;
    ``force`` only logs a warning. Returns the report (None for a non-int8 folder)."""
    folder = Path(folder)
    report = read_report(folder)
    if report is None:
        return None
    try:
        if verify_files:
            for name, digest in report.files.items():
                if (folder / name).is_file() and _sha256(folder / name) != digest:
                    raise FidelityError(f"{folder / name} changed after its fidelity report was made ({REPORT_NAME} "
                                        f"has another sha256): rebuild with `lsld-engine export --precision int8`")
        gate(report, folder, min_mean_cosine, min_cosine)
    except FidelityError as e:
        if not force:
            raise
        log.warning("%s (forced)", e)
    return report


def summary_line(backend) -> str | None:
    """The run summary's line naming the int8 engine's fidelity report, None when ``backend`` runs
    no int8 folder (commands print it after their summary)."""
    folder = getattr(backend, "int8_dir", None)
    if folder is None:
        return None
    report = read_report(folder)
    if report is None:
        return None
    return f"int8 engine {folder}: {report.summary()} (fidelity report {Path(folder) / REPORT_NAME})"


class Int8BackendError(LsldError, ValueError):
    """``--precision int8`` with a backend that has no int8 path."""


def int8_backend_options(backend: str, precision: str, engine_dir, force: bool) -> dict:
    """Backend options for ``precision`` (the commands' hook): ``{}`` unless ``int8``, which runs only
    on ONNX Runtime: ``auto`` over the export cache's int8 engine (built on first use) or over
    ``--engine-dir``; ``onnx`` over ``--engine-dir`` (an int8 folder, itself or its ``int8/``). The torch
    backend has no int8 kernels here (PyTorch's dynamic int8 Linear was not worth a second int8
    path next to ONNX Runtime's), so asking for it is an error rather than a silent fp32 run."""
    if precision != "int8":
        return {}
    if backend not in ("onnx", "auto"):
        raise Int8BackendError(f"--precision int8 runs int8 ONNX files, not {backend}: use --backend auto (the "
                               "default; CPU) or --backend onnx with --engine-dir from `lsld-engine export "
                               "--precision int8`")
    if engine_dir is None and backend != "auto":
        raise Int8BackendError("--backend onnx --precision int8 needs --engine-dir (the folder of `lsld-engine "
                               "export --precision int8 --out DIR`); --backend auto (the default) builds an int8 "
                               "engine in the export cache instead")
    return {"force_int8": bool(force)}
