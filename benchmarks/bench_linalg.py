"""Memory bandwidth: STREAM triad, sparse mat-vec and one PCG solve, in GB/s (1e9 B/s).

``bench_triad[threads]``
    ``a = b + s c`` over 3 × 2^23 float64 (3 × 64 MiB, beyond any cache here), Numba
    ``prange``, best of the rounds; bytes = 24 per element (STREAM's count: read b, c,
    write a; the write-allocate read of ``a`` is not counted, as in STREAM).

``bench_matvec[matrix-threads]``
    ``twin.solver.sell.sell_matvec`` (the SELL-16 mat-vec twin's diffusion solve uses) on the
    P1 stiffness of a box mesh.  Bytes per call = 12 per stored entry (padding included) +
    16 per chunk of 16 rows + 8 n (x read once) + 8 per padded row (y written): the compulsory
    traffic (``_common.sell_matvec_bytes``; ``GBs_no_reuse`` counts one x gather per entry
    instead).  ``csr_GBs`` and ``sell_speedup_over_csr``: the CSR mat-vec
    (``twin.solver.linalg.csr_matvec``) on the same matrix in the same session.  ``GBs_per_triad_GBs`` is the fraction of the triad
    bandwidth at the same thread count that the mat-vec reaches (target >= 0.6).
    Matrices: ``niederer`` = the slab at dx 0.2 (58 176 nodes, 0.83 M nnz, ~10 MB: it fits
    in the 32 MB L3 of the reference machine, so it can beat the DRAM triad);
    ``box_8M`` = a 40 mm cube at 0.5 mm (531 441 nodes, 7.8 M nnz, 94 MB: from DRAM;
    isotropic conductivity: only the sparsity pattern matters for the speed).

``bench_pcg[threads]``
    One Jacobi-PCG solve of the Niederer diffusion system (M + θ dt K/(χ Cm)) x = B v with
    θ = 1/2, dt = 0.01 ms, tolerance 1e-8, warm-started from v, where v is a
    depolarisation front (-85 mV to +20 mV, tanh over 0.5 mm at x = 5 mm) — what one
    time step of the slab solves, with the SELL-16 kernels of the diffusion stepper.
    Bytes = (its + 1) mat-vecs + the vector traffic (``_common.pcg_bytes``) + B's values.  Reported: ``iterations``, ``GBs``, ``GBs_per_triad_GBs``.
"""

from __future__ import annotations

import numpy as np
import pytest

import _common as C

THREADS = [1, 2]


def _threads_or_skip(threads: int) -> None:
    if threads > C.max_threads():
        pytest.skip(f"only {C.max_threads()} Numba threads here")


@pytest.mark.ci
@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
def bench_triad(measure, triad, threads):
    _threads_or_skip(threads)
    n = C.TRIAD_N
    with C.numba_threads(threads):
        a, b, c = C.triad_arrays(n)
        best, median = measure.run(lambda: C.triad_once(a, b, c), rounds=12, warmup=2)
    gbs = C.triad_bytes(n) / best / 1e9
    # the session's reference bandwidth is the better of this and the fixture's own measurement
    session = triad(threads)
    if gbs > session["GBs"]:
        session.update(GBs=gbs, best_s=best)
    measure.report(threads, n=n, bytes=C.triad_bytes(n), GBs=gbs, GBs_median=C.triad_bytes(n) / median / 1e9,
                   GBs_cpu_norm=C.triad_bytes(n) / (measure.cpu_seconds() / threads) / 1e9,
                   session_triad_GBs=session["GBs"], summary_keys=["GBs_median", "GBs_cpu_norm", "cpu_use"])


# --------------------------------------------------------------------------- matrices
def _stiffness_arrays(kind: str):
    from twin.fem.assembly import conductivity_tensors, stiffness_matrix
    from twin.mesh.generate import box_mesh
    from twin.solver.diffusion import _shared_pattern

    if kind == "niederer":
        from twin.verify.niederer import SLAB_SIZE, monodomain_conductivities

        mesh = box_mesh(SLAB_SIZE, C.NIEDERER_DX)
        sl, st = monodomain_conductivities()
        k = stiffness_matrix(mesh.points, mesh.tets, conductivity_tensors(mesh.fibres, sl, st, st, None))
    elif kind == "box_8M":
        mesh = box_mesh((40.0, 40.0, 40.0), 0.5)
        k = stiffness_matrix(mesh.points, mesh.tets, np.full(mesh.n_tets, 0.1))
    else:
        raise ValueError(kind)
    indptr, indices, (data,) = _shared_pattern(k)
    return indptr, indices, data


@pytest.fixture(scope="module", params=[pytest.param("niederer", marks=pytest.mark.ci), "box_8M"])
def matrix(request):
    return request.param, _stiffness_arrays(request.param)


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
def bench_matvec(measure, matrix, threads):
    from twin.solver.linalg import csr_matvec
    from twin.solver.sell import SELL_C, sell_from_csr, sell_matvec

    _threads_or_skip(threads)
    name, (indptr, indices, data) = matrix
    n = indptr.shape[0] - 1
    nnz = data.shape[0]
    sm = sell_from_csr(indptr, indices, data)
    val = sm.values[0]
    x = np.random.default_rng(0).standard_normal(n)
    y = np.zeros(sm.n_pad)
    y_csr = np.zeros(n)
    indices32 = indices.astype(np.uint32)
    reps = max(1, int(2e7 // nnz))       # about 20 M nonzeros per timed call

    def calls():
        for _ in range(reps):
            sell_matvec(sm.offset, sm.width, sm.col, val, x, y)

    def calls_csr():
        for _ in range(reps):
            csr_matvec(indptr, indices32, data, x, y_csr)

    with C.numba_threads(threads):
        sell_matvec(sm.offset, sm.width, sm.col, val, x, y)
        csr_matvec(indptr, indices32, data, x, y_csr)
        csr_best = C.best_of(calls_csr, 3)[0]
        best, median = measure.run(calls, rounds=7, warmup=1)
    import scipy.sparse as sp

    assert np.allclose(y[:n], sp.csr_matrix((data, indices, indptr), shape=(n, n)) @ x)
    chunks = sm.width.shape[0]
    nbytes = C.sell_matvec_bytes(n, sm.col.shape[0], chunks, sm.values.itemsize, SELL_C)
    b = C.matvec_bytes(n, nnz)
    t = best / reps
    gbs = nbytes / t / 1e9
    measure.report(threads, ratio_to_triad={"GBs": gbs}, matrix=name, format="SELL-16", nodes=n, nnz=nnz,
                   padding=sm.col.shape[0] / nnz - 1, nnz_per_row=nnz / n, bytes_per_call=nbytes, GBs=gbs,
                   GBs_median=nbytes / (median / reps) / 1e9,
                   GBs_no_reuse=(nbytes - 8 * n + 8 * sm.col.shape[0]) / t / 1e9,
                   matvecs_per_s=1 / t, nonzeros_per_s=nnz / t,
                   csr_GBs=b["compulsory"] / (csr_best / reps) / 1e9, sell_speedup_over_csr=csr_best / best,
                   GBs_cpu_norm=nbytes * reps / (measure.cpu_seconds() / threads) / 1e9,
                   summary_keys=["nnz", "padding", "csr_GBs", "sell_speedup_over_csr", "GBs_cpu_norm", "cpu_use"])


# --------------------------------------------------------------------------- PCG
@pytest.fixture(scope="module")
def niederer_stepper():
    problem = C.build(C.niederer_case_text(C.NIEDERER_DT))
    stepper = problem.diffusion
    x = problem.mesh.points[:, 0]
    v = -85.0 + 105.0 / (1.0 + np.exp((x - 5.0) / 0.5))
    return stepper, np.ascontiguousarray(v)


@pytest.mark.ci
@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
def bench_pcg(measure, niederer_stepper, threads):
    from twin.solver.sell import SELL_C, partials, pcg_from, theta_residual

    _threads_or_skip(threads)
    st, v = niederer_stepper
    sm = st._sell
    a, d = sm.values[0], sm.values[1]
    n = v.shape[0]
    x = np.zeros(sm.n_pad)
    r, z, p, q = (np.zeros(sm.n_pad) for _ in range(4))
    partial = partials()
    its: list[int] = []

    vp = np.zeros(sm.n_pad)
    vp[:n] = v

    def solve():
        x[:n] = v     # warm start from v, as a time step without history
        rr, rz, bb = theta_residual(sm.offset, sm.width, sm.col, a, d, vp, x, r, z, p, st._diag_inv, partial)
        its.append(pcg_from(sm.offset, sm.width, sm.col, a, st._diag_inv, x, st.tol, st.max_iter, r, z, p, q,
                            partial, rr, rz, bb))

    with C.numba_threads(threads):
        best, median = measure.run(solve, rounds=10, warmup=2)
    assert min(its) > 0, "PCG failed"
    it = its[-1]
    chunks = sm.width.shape[0]
    mv = C.sell_matvec_bytes(n, sm.col.shape[0], chunks, sm.values.itemsize, SELL_C)
    # the set-up pass reads D's values too (its pattern is A's)
    nbytes = C.pcg_bytes(n, sm.nnz, it, mv) + sm.values.itemsize * sm.col.shape[0]
    gbs = nbytes / best / 1e9
    measure.report(threads, ratio_to_triad={"GBs": gbs}, matrix="niederer M + 0.5 dt K'", format="SELL-16",
                   nodes=n, nnz=sm.nnz, iterations=it, GBs=gbs, GBs_median=nbytes / median / 1e9,
                   solve_ms=1e3 * best, ms_per_iteration=1e3 * best / it,
                   GBs_cpu_norm=nbytes / (measure.cpu_seconds() / threads) / 1e9,
                   summary_keys=["iterations", "solve_ms", "ms_per_iteration", "GBs_cpu_norm", "cpu_use"])
