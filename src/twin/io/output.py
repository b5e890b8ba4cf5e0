"""The output folder of one run: time series, maps, probes, summary, checkpoint.

Existing results are never silently replaced: a folder that already holds a
run is refused unless the caller asks to ``overwrite`` it (only twin's own
files are removed) or to ``resume`` it from its checkpoint.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import OutputError
from .atomic import write_json, write_text
from .vtk import FrameEncoder, PvdSeries, write_vtu

logger = logging.getLogger(__name__)

SERIES_DIR = "series"
PVD = "series.pvd"
ACTIVATION = "activation.vtu"
PROBES = "probes.csv"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.h5"
OWN_FILES = (PVD, ACTIVATION, PROBES, SUMMARY, CHECKPOINT, "ecg.csv")
#: frames handed to the writer thread and not yet on disk, at most (each holds a copy of its fields)
FRAMES_IN_FLIGHT = 2


class RunFolder:
    """Manages the files of one run in ``folder``.

    Parameters
    ----------
    folder
        Output directory (created if needed).
    overwrite
        Replace a previous run's files in ``folder``.
    resume
        Continue the run whose checkpoint is in ``folder``.
    """

    def __init__(self, folder: str | Path, *, overwrite: bool = False, resume: bool = False) -> None:
        self.folder = Path(folder)
        self.resume = resume
        self.overwrite = overwrite
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"output path {self.folder} exists and is not a folder")
        previous = self._previous()
        if resume:
            if not (self.folder / CHECKPOINT).exists():
                raise OutputError(f"cannot resume: no {CHECKPOINT} in {self.folder} (enable "
                                  "outputs.checkpoint_interval to write checkpoints)")
        elif previous and not overwrite:
            raise OutputError(f"output folder {self.folder} already holds a run ({', '.join(previous)}); "
                              "pass --overwrite to replace it, --resume to continue it, or -o to "
                              "choose another folder")
        pvd_path = self.folder / PVD
        self.series = PvdSeries.read(pvd_path) if (resume and pvd_path.exists()) else PvdSeries(pvd_path)
        self._prepared = False
        self._encoder: FrameEncoder | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()

    def _previous(self) -> list[str]:
        found = [n for n in OWN_FILES if (self.folder / n).exists()]
        series = self.folder / SERIES_DIR
        if series.is_dir() and any(series.iterdir()):
            found.append(SERIES_DIR + "/")
        return found

    def prepare(self) -> None:
        """Create the folder (removing the previous run's files when overwriting).

        Called once the problem is set up, so a case that fails to set up leaves nothing behind.
        """
        if self._prepared:
            return
        if self.overwrite and not self.resume and self._previous():
            logger.warning("overwriting the previous run in %s", self.folder)
            for name in OWN_FILES:
                (self.folder / name).unlink(missing_ok=True)
            shutil.rmtree(self.folder / SERIES_DIR, ignore_errors=True)
        try:
            (self.folder / SERIES_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {self.folder}: {exc.strerror or exc}") from None
        self._prepared = True

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / CHECKPOINT

    def write_frame(self, step: int, time: float, points: np.ndarray, tets: np.ndarray,
                    fields: Mapping[str, np.ndarray]) -> None:
        """Hand one time-series frame to the writer thread (it adds the frame to the ``.pvd`` index
        once the file is complete), so the solver does not wait for compression and disk.

        The fields are copied first: the caller may change them right away.  A failure to
        write surfaces as :class:`OutputError` at the next frame or at :meth:`wait_frames`.
        """
        if self._encoder is None or self._encoder.n_points != len(points):
            self._encoder = FrameEncoder(points, tets)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin-frames")
        while len(self._pending) >= FRAMES_IN_FLIGHT:
            self._collect(self._pending.popleft())
        path = self.folder / SERIES_DIR / f"frame_{step:08d}.vtu"
        snapshot = {name: np.array(values, copy=True) for name, values in fields.items()}
        self._pending.append(self._writer.submit(self._write_frame_now, self._encoder, path, time, snapshot))

    def _write_frame_now(self, encoder: FrameEncoder, path: Path, time: float,
                         fields: Mapping[str, np.ndarray]) -> None:
        encoder.write(path, fields)
        self.series.add(time, path)   # one writer thread: frames are indexed in order

    @staticmethod
    def _collect(future: Future) -> None:
        try:
            future.result()
        except OSError as exc:
            raise OutputError(f"cannot write a time-series frame: {exc.strerror or exc} "
                              f"({getattr(exc, 'filename', '') or ''})") from None

    def wait_frames(self, raise_errors: bool = True, close: bool = False) -> None:
        """Block until every frame handed over is on disk and indexed.

        Parameters
        ----------
        raise_errors
            Raise :class:`OutputError` for a frame that failed (``False`` while another error
            is already on its way up: the frames are still finished, the first error wins).
        close
            Also stop the writer thread (the end of a run; a later frame starts a new one).
        """
        try:
            while self._pending:
                future = self._pending.popleft()
                if raise_errors:
                    self._collect(future)
                else:
                    future.exception()
        finally:
            if close and self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def truncate_series(self, time: float) -> None:
        """Forget frames after ``time`` [ms] (resuming from an earlier checkpoint)."""
        self.wait_frames()
        self.series.truncate(time)

    def write_activation(self, points: np.ndarray, tets: np.ndarray, maps: Mapping[str, np.ndarray],
                         cell_data: Mapping[str, np.ndarray]) -> Path:
        """Write the derived maps [ms] (activation time, repolarisation, APD; NaN where undefined)."""
        path = self.folder / ACTIVATION
        write_vtu(path, points, tets, point_data=dict(maps), cell_data=cell_data)
        return path

    def write_table(self, name: str, header: Sequence[str], rows: np.ndarray, digits: int = 9) -> Path:
        """Write a CSV table (e.g. ``ecg.csv``) atomically, numbers with ``digits`` significant digits."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([f"{x:.{digits}g}" for x in row])
        path = self.folder / name
        write_text(path, buf.getvalue())
        return path

    def write_probes(self, header: Sequence[str], rows: np.ndarray) -> Path:
        """Write probe traces as CSV (time [ms] then one column per probe [mV])."""
        return self.write_table(PROBES, header, rows, digits=10)

    def write_summary(self, summary: Mapping) -> Path:
        path = self.folder / SUMMARY
        write_json(path, summary)
        return path
