"""Pseudo-ECG by lead fields, standard 12-lead electrode placement, QRS and QT metrics.

The pseudo-ECG (Gima & Rudy 2002, Circ Res 90:889, eq. 1; Chaste's
``PseudoEcgCalculator``) is the potential of the intracellular current dipole
density ``−σ_i ∇V`` in an infinite homogeneous volume conductor of conductivity
``σ_b``::

    φ_e(t) = −1/(4π σ_b) ∫_Ω (σ_i ∇V) · ∇(1/r) dΩ,    r = |x − x_e|,

with ∇ acting on the source point x, so ``∇(1/r) = −(x − x_e)/r³`` (the sign
used by Chaste).  A wavefront travelling towards the electrode gives a positive
deflection: behind the front V is high, so ``−σ_i ∇V`` points along the
direction of travel, i.e. at the electrode.

With P1 elements ∇V is constant per element, ``∇V|_e = Σ_k V_k ∇φ_k``, so the
integral is linear in the nodal values.  Evaluating ``∇(1/r)`` at the element
centroid (one-point rule, second order in the element size h for an electrode
outside the tissue) gives one weight vector per electrode::

    L_e[k] = −1/(4π σ_b) Σ_{elements ∋ k} |T| (σ_T ∇(1/r)(c_T)) · ∇φ_k,    φ_e = L_e · V.

Because ``Σ_k ∇φ_k = 0`` in every element, ``Σ_k L_e[k] = 0``: a uniform V gives
no signal, whatever the mesh.

Units: lengths mm, σ in S/m (= mS/mm), V in mV → φ in mV.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ObserverError
from ..fem.assembly import p1_gradients

logger = logging.getLogger(__name__)

#: Default conductivity of the surrounding volume conductor [S/m]: the order of a
#: torso average (Gima & Rudy used a homogeneous medium; the value only scales φ).
SIGMA_BATH = 0.2

#: Wilson's central terminal, the reference of the precordial leads.
_WCT = {"RA": -1.0 / 3.0, "LA": -1.0 / 3.0, "LL": -1.0 / 3.0}


def _precordial(name: str) -> dict[str, float]:
    weights = dict(_WCT)
    weights[name] = 1.0
    return weights


#: The standard 12 leads as linear combinations of electrode potentials.
#: Limb leads (Einthoven), augmented leads (Goldberger: against the mean of the
#: other two limbs) and precordial leads against Wilson's central terminal.
STANDARD_LEADS: dict[str, dict[str, float]] = {
    "I": {"LA": 1.0, "RA": -1.0},
    "II": {"LL": 1.0, "RA": -1.0},
    "III": {"LL": 1.0, "LA": -1.0},
    "aVR": {"RA": 1.0, "LA": -0.5, "LL": -0.5},
    "aVL": {"LA": 1.0, "RA": -0.5, "LL": -0.5},
    "aVF": {"LL": 1.0, "RA": -0.5, "LA": -0.5},
    **{f"V{i}": _precordial(f"V{i}") for i in range(1, 7)},
}


# --------------------------------------------------------------------------- lead fields

def lead_field(points: np.ndarray, tets: np.ndarray, sigma: np.ndarray, electrode: Sequence[float],
               sigma_bath: float = SIGMA_BATH, *, grads: np.ndarray | None = None,
               volumes: np.ndarray | None = None) -> np.ndarray:
    """Lead-field weights of one electrode: ``φ_e = L_e · V``.

    Parameters
    ----------
    points
        ``(n, 3)`` node coordinates [mm].
    tets
        ``(m, 4)`` vertex indices.
    sigma
        ``(m, 3, 3)`` intracellular conductivity tensors, or ``(m,)`` isotropic values [S/m].
    electrode
        Electrode position [mm].
    sigma_bath
        Conductivity of the volume conductor [S/m].
    grads, volumes
        P1 gradients ``(m, 4, 3)`` [1/mm] and volumes ``(m,)`` [mm³], when already known.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` weights [mV per mV of V]; they sum to zero.

    Raises
    ------
    ObserverError
        When the electrode sits on an element centroid (``1/r`` singular).
    """
    if grads is None or volumes is None:
        grads, volumes = p1_gradients(points, tets)
    xe = np.asarray(electrode, dtype=np.float64).reshape(3)
    d = points[tets].mean(axis=1) - xe                  # (m, 3) centroid − electrode
    r = np.linalg.norm(d, axis=1)
    if np.any(r == 0.0):
        raise ObserverError(f"ECG electrode at {xe.tolist()} mm lies on an element centroid; move it "
                            "outside the tissue")
    grad_inv_r = -d / r[:, None] ** 3                   # ∇_x (1/r) [1/mm²]
    if sigma.ndim == 1:
        w = sigma[:, None] * grad_inv_r
    else:
        w = np.einsum("mij,mj->mi", sigma, grad_inv_r)
    local = volumes[:, None] * np.einsum("mi,mki->mk", w, grads)    # (m, 4)
    weights = np.bincount(tets.ravel(), weights=local.ravel(), minlength=len(points))
    return weights * (-1.0 / (4.0 * np.pi * float(sigma_bath)))


class PseudoECG:
    """Electrode potentials by precomputed lead fields, recorded every step.

    Parameters
    ----------
    points
        ``(n, 3)`` node coordinates [mm].
    tets
        ``(m, 4)`` vertex indices.
    sigma_tensors
        ``(m, 3, 3)`` conductivity tensors [S/m] as from :func:`twin.fem.conductivity_tensors`
        (or ``(m,)`` isotropic values).  Formally the intracellular σ_i; passing the
        monodomain σ (the usual choice) changes only the amplitude when σ_i ∝ σ.
    electrodes
        Name → position [mm] (e.g. from :func:`standard_12_lead_positions`).
    sigma_bath
        Conductivity of the surrounding infinite volume conductor [S/m].
    n_samples
        Rows to preallocate (for a record every step: steps + 1); see :meth:`allocate`.

    Attributes
    ----------
    names : list[str]
        Electrode names, in column order.
    matrix : numpy.ndarray
        ``(n_electrodes, n)`` lead-field weights, C-contiguous.
    times : numpy.ndarray
        ``(n_samples,)`` recorded times [ms], NaN in rows not yet written.
    values : numpy.ndarray
        ``(n_samples, n_electrodes)`` electrode potentials [mV].
    """

    def __init__(self, points: np.ndarray, tets: np.ndarray, sigma_tensors: np.ndarray,
                 electrodes: Mapping[str, Sequence[float]], sigma_bath: float = SIGMA_BATH,
                 n_samples: int = 0) -> None:
        if not electrodes:
            raise ObserverError("the pseudo-ECG needs at least one electrode")
        if not (np.isfinite(sigma_bath) and sigma_bath > 0):
            raise ObserverError(f"sigma_bath must be a positive conductivity [S/m], got {sigma_bath!r}")
        points = np.asarray(points, dtype=np.float64)
        tets = np.asarray(tets)
        sigma = np.asarray(sigma_tensors, dtype=np.float64)
        if sigma.shape not in ((len(tets), 3, 3), (len(tets),)):
            raise ObserverError(f"sigma_tensors must have shape ({len(tets)}, 3, 3) or ({len(tets)},), "
                                f"got {sigma.shape}")
        self.names = list(electrodes)
        self.positions = np.array([np.asarray(electrodes[k], dtype=np.float64).reshape(3)
                                   for k in self.names])
        if not np.all(np.isfinite(self.positions)):
            raise ObserverError("ECG electrode positions must be finite [mm]")
        self.sigma_bath = float(sigma_bath)
        grads, volumes = p1_gradients(points, tets)
        self.matrix = np.ascontiguousarray(np.stack(
            [lead_field(points, tets, sigma, xe, sigma_bath, grads=grads, volumes=volumes)
             for xe in self.positions]))
        self._warn_if_close(points, tets, volumes)
        self.allocate(n_samples)

    def _warn_if_close(self, points: np.ndarray, tets: np.ndarray, volumes: np.ndarray) -> None:
        # The centroid rule needs r well above the element size; an electrode on or
        # inside the tissue still gets a number, but a poor one.
        centroids = points[tets].mean(axis=1)
        for name, xe in zip(self.names, self.positions):
            r = np.linalg.norm(centroids - xe, axis=1)
            j = int(np.argmin(r))
            # a Kuhn tetrahedron of a cube with side a has volume a³/6 and edges up to a√3
            h = np.cbrt(6.0 * volumes[j]) * 1.5
            if r[j] < 2.0 * h:
                logger.warning("ECG electrode %s at %s mm is %.3g mm from the tissue (element size %.3g mm): "
                               "the lead field is inaccurate this close", name, xe.tolist(), r[j], h)

    def allocate(self, n_samples: int) -> None:
        """(Re)allocate the record arrays for ``n_samples`` rows (clears the record)."""
        self.times = np.full(int(n_samples), np.nan)
        self.values = np.full((int(n_samples), len(self.names)), np.nan)

    def potentials(self, v: np.ndarray) -> np.ndarray:
        """Electrode potentials [mV] for one field ``v`` ``(n,)`` [mV] (allocates; not for the loop)."""
        return self.matrix @ v

    def record(self, row: int, t: float, v: np.ndarray) -> None:
        """Store ``φ = L V`` at time ``t`` [ms] in row ``row``, without allocating.

        ``v`` must be float64 and contiguous, like the solver's ``Vm`` row.
        """
        self.times[row] = t
        np.dot(self.matrix, v, out=self.values[row])

    def recorded(self) -> tuple[np.ndarray, np.ndarray]:
        """Times ``(k,)`` [ms] and potentials ``(k, n_electrodes)`` [mV] of the rows written."""
        done = np.isfinite(self.times)
        return self.times[done], self.values[done]

    def electrode(self, name: str) -> np.ndarray:
        """Recorded potential of one electrode [mV]."""
        if name not in self.names:
            raise ObserverError(f"unknown ECG electrode {name!r}; available: {', '.join(self.names)}")
        return self.recorded()[1][:, self.names.index(name)]

    def leads(self, definitions: Sequence[str] | Mapping[str, Mapping[str, float]] | None = None
              ) -> dict[str, np.ndarray]:
        """Lead signals [mV] over the recorded rows; see :func:`form_leads`.

        With ``definitions=None`` and electrodes from which no standard lead can be
        formed (no RA/LA/LL), each electrode is returned as a unipolar lead: the
        pseudo-ECG potentials are already referred to infinity.
        """
        _, values = self.recorded()
        potentials = {k: values[:, i] for i, k in enumerate(self.names)}
        leads = form_leads(potentials, definitions)
        return leads if leads or definitions is not None else potentials

    def table(self, definitions: Sequence[str] | Mapping[str, Mapping[str, float]] | None = None
              ) -> tuple[list[str], np.ndarray]:
        """Header and rows for a CSV file: ``time_ms``, ``phi_<electrode>`` [mV], then the leads [mV].

        Electrode columns carry a prefix because a precordial lead (V1 − WCT) and
        its electrode (V1) share a name.
        """
        times, values = self.recorded()
        leads = self.leads(definitions)
        if definitions is None and list(leads) == self.names:
            leads = {}                      # unipolar fallback: the same numbers as the electrode columns
        header = ["time_ms"] + [f"phi_{k}" for k in self.names] + list(leads)
        return header, np.column_stack([times, values, *leads.values()])

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        """Arrays to store in a checkpoint (the geometry-derived matrix is rebuilt instead)."""
        return {"ecg_times": self.times, "ecg_values": self.values}

    def restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Reload the record written by :meth:`checkpoint_arrays`."""
        k = len(arrays["ecg_times"])
        self.times[:k] = arrays["ecg_times"]
        self.values[:k] = arrays["ecg_values"]


def form_leads(potentials: Mapping[str, np.ndarray],
               definitions: Sequence[str] | Mapping[str, Mapping[str, float]] | None = None
               ) -> dict[str, np.ndarray]:
    """Combine electrode potentials into leads.

    Parameters
    ----------
    potentials
        Electrode name → potential [mV] (scalars or arrays of one shape).
    definitions
        ``None``: every standard lead (:data:`STANDARD_LEADS`) whose electrodes are
        all present.  A sequence of names: those standard leads.  A mapping
        lead name → {electrode: weight}: custom leads, e.g. ``{"bipolar": {"A": 1, "B": -1}}``.

    Returns
    -------
    dict[str, numpy.ndarray]
        Lead name → signal [mV].

    Raises
    ------
    ObserverError
        For an unknown standard lead or a missing electrode.
    """
    if definitions is None:
        definitions = {k: w for k, w in STANDARD_LEADS.items() if all(e in potentials for e in w)}
    elif not isinstance(definitions, Mapping):
        unknown = [k for k in definitions if k not in STANDARD_LEADS]
        if unknown:
            raise ObserverError(f"unknown standard lead(s) {unknown}; available: {', '.join(STANDARD_LEADS)}")
        definitions = {k: STANDARD_LEADS[k] for k in definitions}
    out: dict[str, np.ndarray] = {}
    for lead, weights in definitions.items():
        missing = [e for e in weights if e not in potentials]
        if missing:
            raise ObserverError(f"lead {lead!r} needs electrode(s) {missing}; available: "
                                f"{', '.join(potentials) or 'none'}")
        out[lead] = sum(float(w) * np.asarray(potentials[e], dtype=np.float64) for e, w in weights.items())
    return out


# --------------------------------------------------------------------------- electrode placement

#: Precordial angles in the transverse plane [deg], from the patient's left (−x)
#: towards anterior (+y): V6 mid-axillary, V5 anterior axillary, V4 mid-clavicular,
#: V3 between V2 and V4, V2/V1 at the left/right sternal border.
_PRECORDIAL_ANGLES = {"V1": 120.0, "V2": 90.0, "V3": 75.0, "V4": 60.0, "V5": 30.0, "V6": 0.0}


def standard_12_lead_positions(points: np.ndarray, *, chest_factor: float = 2.0,
                               limb_factor: float = 6.0) -> dict[str, np.ndarray]:
    """Plausible positions of RA, LA, LL and V1–V6 around a heart mesh [mm].

    Geometry (for generated anatomy; give real torso positions when you have them).
    The body frame follows :mod:`twin.mesh.anatomy`: z is the heart's long axis
    with the base at +z (superior) and the apex at −z; the RV lies at +x, so +x is
    the patient's right and (right-handed) +y is anterior.  With c the centre of
    the mesh's bounding box and R half its diagonal (every node lies within R of c):

    * limb electrodes on a circle of radius ``limb_factor·R`` in the frontal (x–z)
      plane through c, as an Einthoven triangle: RA at 30° above horizontal on the
      right (+x), LA at 30° above horizontal on the left (−x), LL straight down
      (−z).  Lead II then points 60° below the patient's left, as in the
      hexaxial reference system;
    * precordial electrodes on a circle of radius ``chest_factor·R`` in the
      transverse (x–y) plane through c, at angles measured from the patient's left
      (−x) towards anterior (+y): V6 0°, V5 30°, V4 60°, V3 75°, V2 90°, V1 120°.

    Every electrode is at least ``(chest_factor − 1)·R`` from every node.

    Parameters
    ----------
    points
        ``(n, 3)`` node coordinates [mm].
    chest_factor, limb_factor
        Radii of the chest and limb circles in units of R.

    Returns
    -------
    dict[str, numpy.ndarray]
        Electrode name → ``(3,)`` position [mm], in the order RA, LA, LL, V1 … V6.
    """
    if not (chest_factor > 1.0 and limb_factor > 1.0):
        raise ObserverError("chest_factor and limb_factor must exceed 1 so the electrodes lie outside the heart")
    points = np.asarray(points, dtype=np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = 0.5 * (lo + hi)
    radius = 0.5 * float(np.linalg.norm(hi - lo))
    if radius == 0.0:
        raise ObserverError("cannot place ECG electrodes around a mesh of zero extent")
    right, anterior, superior = np.eye(3)
    c30, s30 = np.cos(np.pi / 6), np.sin(np.pi / 6)
    limb = limb_factor * radius
    out = {"RA": centre + limb * (c30 * right + s30 * superior),
           "LA": centre + limb * (-c30 * right + s30 * superior),
           "LL": centre - limb * superior}
    chest = chest_factor * radius
    for name, deg in _PRECORDIAL_ANGLES.items():
        a = np.deg2rad(deg)
        out[name] = centre + chest * (np.cos(a) * -right + np.sin(a) * anterior)
    return out


# --------------------------------------------------------------------------- metrics

def _interval_slopes(t: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    if t.ndim != 1 or t.shape != s.shape or len(t) < 3:
        raise ObserverError(f"need matching 1-D time and signal arrays of 3 or more samples, got "
                            f"{t.shape} and {s.shape}")
    dt = np.diff(t)
    if np.any(dt <= 0) or not np.all(np.isfinite(s)):
        raise ObserverError("time must increase strictly and the signal must be finite")
    # Slopes on the sampling intervals, placed at the midpoints: exact for
    # piecewise-linear signals and free of the smoothing of central differences.
    return 0.5 * (t[1:] + t[:-1]), np.diff(s) / dt


def _cluster(tm: np.ndarray, active: np.ndarray, anchor: int, max_gap: float) -> tuple[int, int]:
    """First and last active interval of the run of ``active`` around ``anchor``,
    merging runs separated by at most ``max_gap`` [ms]."""
    on = np.flatnonzero(active)
    k = int(np.searchsorted(on, anchor))
    lo = hi = k
    while lo > 0 and tm[on[lo]] - tm[on[lo - 1]] <= max_gap:
        lo -= 1
    while hi < len(on) - 1 and tm[on[hi + 1]] - tm[on[hi]] <= max_gap:
        hi += 1
    return int(on[lo]), int(on[hi])


def qrs_onset_offset(t: np.ndarray, signal: np.ndarray, *, fraction: float = 0.1, max_gap: float = 10.0,
                     baseline: float | None = None) -> tuple[float, float]:
    """QRS onset and offset of one beat [ms], by slope and amplitude thresholds.

    Rule.  Slopes ``s'`` are taken on the sampling intervals (at their
    midpoints); ``S = max |s'|``.  A cluster of intervals around the steepest one
    is formed, merging runs separated by at most ``max_gap`` (the brief flat spots
    at the R and S peaks), in two passes:

    1. intervals with ``|s'| ≥ fraction·S``; let ``A`` be the largest deviation
       ``|s − baseline|`` within this cluster;
    2. intervals with ``|s'| ≥ fraction·S`` *or* ``|s − baseline| ≥ fraction·A``.

    The second pass keeps a QRS whose middle is flat but far from the baseline in
    one complex — the square pulse of a planar wave crossing a slab, whose
    steepest edges are the front forming at the stimulus and vanishing at the far
    boundary.  Onset and offset are where the activity
    ``max(|s'|/(fraction·S), |s − baseline|/(fraction·A))`` crosses 1 at the ends
    of the cluster, interpolated linearly between midpoints (within half a sample
    for piecewise-linear signals).  The steepest deflection of a beat is in its
    QRS and the ST segment separates the T wave, so the T wave is not included;
    an elevated ST segment (above ``fraction·A``) is counted as QRS.  For a record
    of several beats pass one beat's window.

    Parameters
    ----------
    t
        ``(k,)`` strictly increasing times [ms].
    signal
        ``(k,)`` lead signal [mV].
    fraction
        Thresholds relative to the maximum absolute slope and to the QRS amplitude.
    max_gap
        Longest inactive stretch [ms] inside the QRS.
    baseline
        Isoelectric level [mV]; default: the first sample (simulated records start
        at rest; start a measured record in the isoelectric segment before the QRS).

    Returns
    -------
    onset, offset
        Times [ms].
    """
    if not 0.0 < fraction < 1.0:
        raise ObserverError(f"fraction must be in (0, 1), got {fraction!r}")
    tm, slope = _interval_slopes(t, signal)
    s = np.asarray(signal, dtype=np.float64)
    base = float(s[0]) if baseline is None else float(baseline)
    mag = np.abs(slope)
    peak = int(np.argmax(mag))
    if mag[peak] == 0.0:
        raise ObserverError("the ECG signal is flat: no QRS complex")
    activity = mag / (fraction * mag[peak])
    first, last = _cluster(tm, activity >= 1.0, peak, max_gap)
    dev = np.abs(0.5 * (s[1:] + s[:-1]) - base)            # deviation at the interval midpoints
    amp = float(np.abs(s[first:last + 2] - base).max())
    if amp > 0.0:
        activity = np.maximum(activity, dev / (fraction * amp))
        first, last = _cluster(tm, activity >= 1.0, peak, max_gap)

    def crossing(i_in: int, i_out: int) -> float:
        if i_out < 0 or i_out >= len(activity):
            return float(tm[i_in])
        f = (1.0 - activity[i_out]) / (activity[i_in] - activity[i_out])
        return float(tm[i_out] + f * (tm[i_in] - tm[i_out]))

    return crossing(first, first - 1), crossing(last, last + 1)


def qrs_duration(t: np.ndarray, signal: np.ndarray, *, fraction: float = 0.1, max_gap: float = 10.0,
                 baseline: float | None = None) -> float:
    """QRS duration [ms]: offset − onset by :func:`qrs_onset_offset`."""
    onset, offset = qrs_onset_offset(t, signal, fraction=fraction, max_gap=max_gap, baseline=baseline)
    return offset - onset


def t_wave_end(t: np.ndarray, signal: np.ndarray, *, fraction: float = 0.1, max_gap: float = 10.0,
               baseline: float | None = None, st_gap: float = 50.0) -> float:
    """End of the T wave by the tangent method [ms].

    The T wave is the largest deviation from the baseline after the QRS offset
    (positive or inverted).  On its terminal limb (from the apex while the signal
    moves back towards the baseline) the steepest interval defines the tangent
    line; the T wave ends where that line meets the baseline.

    Parameters
    ----------
    t, signal
        One beat: ``(k,)`` times [ms] and lead signal [mV].
    fraction, max_gap
        QRS detection, as in :func:`qrs_onset_offset`.
    baseline
        Isoelectric level [mV]; default: the first sample.
    st_gap
        The T-wave apex is sought from this long after the QRS offset [ms]: in small
        tissue preparations the QRS tail can outweigh a low T wave.

    Returns
    -------
    float
        Time of the T-wave end [ms].
    """
    t = np.asarray(t, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    _, offset = qrs_onset_offset(t, s, fraction=fraction, max_gap=max_gap, baseline=baseline)
    base = float(s[0]) if baseline is None else float(baseline)
    after = np.flatnonzero(t > offset + st_gap)
    if len(after) < 3:
        raise ObserverError("no samples after the QRS offset: the record ends before the T wave")
    apex = int(after[np.argmax(np.abs(s[after] - base))])
    sign = np.sign(s[apex] - base)
    if sign == 0:
        raise ObserverError("no T wave: the signal stays on the baseline after the QRS")
    tm, slope = _interval_slopes(t, s)
    # Terminal limb: intervals from the apex on while the signal heads back to the baseline.
    j = apex
    steepest = -1
    while j < len(slope) and sign * slope[j] < 0:
        if steepest < 0 or abs(slope[j]) > abs(slope[steepest]):
            steepest = j
        j += 1
    if steepest < 0:
        raise ObserverError("the T wave does not return towards the baseline before the record ends")
    s_mid = 0.5 * (s[steepest] + s[steepest + 1])
    return float(tm[steepest] + (base - s_mid) / slope[steepest])


def qt_interval(t: np.ndarray, signal: np.ndarray, *, fraction: float = 0.1, max_gap: float = 10.0,
                baseline: float | None = None) -> float:
    """QT interval [ms]: from QRS onset to the T-wave end (tangent method).

    See :func:`qrs_onset_offset` and :func:`t_wave_end` for the rules and parameters.
    """
    onset, _ = qrs_onset_offset(t, signal, fraction=fraction, max_gap=max_gap, baseline=baseline)
    return t_wave_end(t, signal, fraction=fraction, max_gap=max_gap, baseline=baseline) - onset
