"""``report.html`` of a comparison: the metrics table, activation maps and ECGs, for a clinician.

One self-contained file (figures embedded as PNG data URIs) that opens in any browser and
can be sent as is. Maps are rendered off-screen with pyvista (EGL, no display needed) on a
colour scale shared by all arms, so equal colours mean equal times; ECG leads are overlaid
with matplotlib, one colour per arm.
"""

from __future__ import annotations

import base64
import html
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import write_text

logger = logging.getLogger(__name__)

FIGURES = "figures"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_maps(out: Path, arms: list[str], field: str = "activation_time", label: str = "LAT [ms]") -> dict[str, Path]:
    """Render each arm's ``activation.vtu`` off-screen on a shared colour range; return PNG paths."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import pyvista as pv

    meshes = {a: pv.read(out / "arms" / a / "activation.vtu") for a in arms}
    values = np.concatenate([np.asarray(m.point_data[field]) for m in meshes.values()])
    finite = values[np.isfinite(values)]
    clim = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    folder = out / FIGURES
    folder.mkdir(exist_ok=True)
    paths = {}
    for arm, mesh in meshes.items():
        plotter = pv.Plotter(off_screen=True, window_size=(640, 480))
        # early red, late blue/purple: the colour convention of clinical mapping systems
        plotter.add_mesh(mesh, scalars=field, cmap="jet_r", clim=clim, nan_color="lightgray",
                         scalar_bar_args={"title": label, "vertical": False})
        if "dense_scar" in mesh.cell_data and np.any(mesh.cell_data["dense_scar"]):
            scar = mesh.extract_cells(np.flatnonzero(mesh.cell_data["dense_scar"]))
            plotter.add_mesh(scar, color="black", opacity=0.6)
        plotter.add_text(arm, font_size=12)
        plotter.view_isometric()
        path = folder / f"lat_{arm}.png"
        plotter.screenshot(str(path))
        plotter.close()
        paths[arm] = path
    return paths


def plot_ecgs(out: Path, arms: list[str]) -> Path | None:
    """Overlay every arm's pseudo-ECG (``ecg.csv``), one panel per lead; None without ECGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {}
    for arm in arms:
        path = out / "arms" / arm / "ecg.csv"
        if path.exists():
            data[arm] = np.genfromtxt(path, delimiter=",", names=True)
    if not data:
        return None
    leads = [n for n in next(iter(data.values())).dtype.names if n != "time_ms"]
    cols = 3 if len(leads) > 4 else len(leads)
    rows = int(np.ceil(len(leads) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), squeeze=False, sharex=True)
    for k, lead in enumerate(leads):
        ax = axes[k // cols][k % cols]
        for arm, d in data.items():
            ax.plot(d["time_ms"], d[lead], lw=1, label=arm)
        ax.set_title(lead, fontsize=9)
        ax.grid(alpha=0.3)
    for k in range(len(leads), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time [ms]")
    fig.tight_layout()
    path = out / FIGURES / "ecg.png"
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" + (f" {unit}" if unit else "")
    return html.escape(str(value))


def write_report(out: Path, comparison: dict[str, Any]) -> Path:
    """Write ``report.html`` for a comparison (see :func:`twin.compare.compare`)."""
    arms = [r["arm"] for r in comparison["table"]]
    metrics = comparison["metrics"]
    shown = [k for k in metrics if any(r.get(k) is not None for r in comparison["table"])]
    maps = render_maps(out, arms)
    ecg = plot_ecgs(out, arms)
    head = "".join(f"<th>{html.escape(metrics[k]['label'])}</th>" for k in shown)
    body = []
    for row in comparison["table"]:
        cells = []
        for k in shown:
            unit = metrics[k]["unit"]
            delta = row.get(f"delta_{k}")
            extra = ""
            if isinstance(delta, float) and abs(delta) > 1e-9:
                cls = "up" if delta > 0 else "down"
                extra = f' <span class="{cls}">({delta:+.3g})</span>'
            cells.append(f"<td>{_fmt(row.get(k), unit)}{extra}</td>")
        desc = html.escape(row.get("description") or "")
        body.append(f"<tr><th>{html.escape(row['arm'])}<div class='desc'>{desc}</div></th>{''.join(cells)}</tr>")
    details = []
    for arm in comparison["arms"]:
        items = []
        if arm.get("changes"):
            items.append("changes: " + ", ".join(f"<code>{html.escape(str(k))} = {html.escape(str(v))}</code>"
                                                 for k, v in arm["changes"].items()))
        if arm.get("drug_factors"):
            items.append("drug: " + ", ".join(f"{html.escape(p)} × {f:.3g}" for p, f in arm["drug_factors"].items()))
        if arm.get("lesions"):
            items.append(f"{len(arm['lesions'])} ablation lesion(s)")
        items.append(f"run time {arm.get('wall_time_s', 0):.1f} s")
        details.append(f"<li><b>{html.escape(arm['arm'])}</b>: {'; '.join(items)}</li>")
    figures = "".join(f"<figure><img alt='activation map of {html.escape(a)}' src='{_data_uri(p)}'>"
                      f"<figcaption>{html.escape(a)}</figcaption></figure>" for a, p in maps.items())
    ecg_html = (f"<h2>Pseudo-ECG</h2><img class='wide' alt='ECG overlay' src='{_data_uri(ecg)}'>" if ecg else "")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>twin compare: {html.escape(comparison['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.4em 0.7em; text-align: right; }}
thead th {{ background: #f0f0f0; }} tbody th {{ text-align: left; }}
.desc {{ font-weight: normal; font-size: 0.8em; color: #666; }}
.up {{ color: #b00; }} .down {{ color: #06c; }}
figure {{ display: inline-block; margin: 0.5em; }} figure img {{ width: 420px; }}
img.wide {{ max-width: 100%; }}
</style></head>
<body>
<h1>Treatment comparison: {html.escape(comparison['name'])}</h1>
<p>Case <code>{html.escape(str(comparison.get('case', '')))}</code>; {len(arms)} arms, all started from the
same pre-paced state. Differences from the base arm are shown in brackets.</p>
<h2>Metrics</h2>
<table id="metrics"><thead><tr><th>arm</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<ul>{''.join(details)}</ul>
<h2>Activation maps</h2>
<p>Local activation time on one colour scale for all arms (red early, blue late; grey: never
activated; black: dense scar and lesions).</p>
{figures}
{ecg_html}
</body></html>
"""
    path = out / "report.html"
    write_text(path, doc)
    logger.info("report: %s", path)
    return path
