"""Scrolling speed of the four-phase grid vs bare pyqtgraph ImageItems, and startup time to a visible window.

The viewer scrolls 100 slices of a 512 x 512 four-phase phantom exam in the 2 x 2 grid with
a lesion box and a Grad-CAM overlay on every slice of every phase (the worst case: in use
only the picked slices carry them). The peer, in the same process and run, is four bare
pyqtgraph ImageItems in linked ViewBoxes of the same size updating the same arrays with
the same levels. A frame is one slice step plus a synchronous repaint.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_scroll.py [--matrix 512] [--slices 100]

Last line: `gui_scroll: <ratio> (target <= 1.5) PASS|FAIL`; PASS needs the ratio, the
frame time (<= 16 ms) and the startup (<= 2 s) within their targets.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

RATIO_TARGET = 1.5
FRAME_TARGET_MS = 16.0
STARTUP_TARGET_S = 2.0
WIDGET = (1100, 1100)


def phantom_study(matrix: int, slices: int):
    from liverview.phantom import render_exam
    from liverview.study.case import PhaseSource, Study
    from liverview.study.volume import Volume

    volumes, truth = render_exam(11, 0, matrix=matrix, n_slices=slices)
    dy, dx = truth["pixel_spacing"]
    out = {}
    for p, px in volumes.items():
        pos = np.asarray(truth["phases"][p]["positions"], dtype=float)
        step = float(pos[1] - pos[0]) if len(pos) > 1 else 1.0
        affine = np.diag([dx, dy, step, 1.0])
        affine[:3, 3] = [-dx * matrix / 2, -dy * matrix / 2, pos[0]]
        out[p] = Volume(px, affine, series_uid=f"bench.{p}", description=f"phantom {p}")
    sources = {p: PhaseSource(series_uid=f"bench.{p}", description=f"phantom {p}") for p in out}
    return Study(out, sources, study_uid="bench.gui_scroll", patient_id="BENCH", path="(memory)"), truth


def encode(a: np.ndarray) -> dict:
    q = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return {"shape": list(q.shape), "encoding": "uint8/255,zlib,base64",
            "data": base64.b64encode(zlib.compress(q.tobytes(), 6)).decode("ascii")}


def findings_with_cam_everywhere(study, cam_size: int = 64) -> dict:
    """Findings in the engine's stored format with one composite (and CAM) per slice position."""
    ref = study.volumes["P"]
    rows, cols = ref.pixels.shape[1:]
    yy, xx = np.mgrid[:cam_size, :cam_size]
    comps = []
    for k, z in enumerate(ref.positions):
        cy, cx = cam_size * (0.4 + 0.2 * np.sin(k / 9)), cam_size * (0.5 + 0.2 * np.cos(k / 7))
        cam = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (cam_size / 6) ** 2)).astype(np.float32)
        side = cols * 0.6
        comps.append({
            "index": k,
            "picks": {p: 0 for p in study.volumes},
            "positions": {p: float(v.positions[v.index_at(z)]) for p, v in study.volumes.items()},
            "shape": [rows, cols],
            "scale": {p: [1.0, 1.0] for p in study.volumes},
            "explanations": {"stage1": {"attribution": {p: 0.25 for p in study.volumes},
                                        "cam": {"grid": "roi", "square": [cols * 0.2, rows * 0.2, side],
                                                "input_size": cam_size, **encode(cam)}}},
        })
    probs = {"HH": 0.1, "OBHT": 0.05, "HB": 0.8, "OMHT": 0.05}
    exam = {"p_benign": 0.15, "p_malignant": 0.85, "threshold": 0.5, "stage1_call": "malignant",
            "stage2": {"benign": {"HH": 0.66, "OBHT": 0.34}, "malignant": {"HB": 0.94, "OMHT": 0.06}},
            "stage2_call": "HB", "probabilities": probs, "final_class": "HB", "final_group": "malignant",
            "consistent_with_stage1": True}
    return {"composites": comps, "exam": exam, "bundle": {"name": "benchmark"}, "phases_used": list(study.volumes)}


def boxes_everywhere(study):
    from liverview.study.case import Box

    out = []
    for p, v in study.volumes.items():
        rows, cols = v.pixels.shape[1:]
        for k, z in enumerate(v.positions):
            x0 = cols * (0.45 + 0.05 * np.sin(k / 5))
            y0 = rows * 0.35
            w, h = cols * (0.10 + 0.03 * np.sin(k / 4)), rows * (0.09 + 0.02 * np.cos(k / 6))  # a lesion's size varies
            out.append(Box(p, float(z), x0, y0, x0 + w, y0 + h, origin="user"))
    return out


class Viewer:
    """The main window showing the exam with a box and a CAM on every slice of every phase."""

    def __init__(self, study) -> None:
        from PySide6.QtWidgets import QApplication

        from liverview.qt.main_window import MainWindow

        self.w = w = MainWindow()
        w.resize(1700, 1250)
        w.show()
        w._show_study(study)
        w.case.boxes = boxes_everywhere(study)  # set up directly: not an edit to time or save
        w.case.set_findings(findings_with_cam_everywhere(study))
        self.grid = grid = w.grid
        grid.setFixedSize(*WIDGET)
        for _ in range(50):  # let the grid pre-build its box outlines
            QApplication.processEvents()
            time.sleep(0.005)
        self.start = float(grid.views["P"].positions[0])

    def run(self, slices: int) -> float:
        grid = self.grid
        grid.set_position(self.start)
        grid.viewport().repaint()
        t = time.perf_counter()
        for _ in range(slices):
            grid.step(1)
            grid.viewport().repaint()
        return (time.perf_counter() - t) / slices * 1000.0

    def overlays(self) -> dict:
        g = self.grid
        return {p: (g.views[p].cam.isVisible(), len([r for r in g.box_layers[p].rois if r.isVisible()])) for p in g.views}

    def close(self) -> None:
        self.w.shutdown()
        self.w.close()


class Bare:
    """Four bare pyqtgraph ImageItems in linked ViewBoxes, updated with the same arrays and levels."""

    def __init__(self, study) -> None:
        import pyqtgraph as pg
        from PySide6.QtWidgets import QApplication

        from liverview.study.phases import WINDOWS

        pg.setConfigOptions(imageAxisOrder="row-major")
        self.w = w = pg.GraphicsLayoutWidget()
        w.setFixedSize(*WIDGET)
        w.show()
        self.items, self.vols = [], []
        first = None
        for i, (p, vol) in enumerate(study.volumes.items()):
            vb = w.addViewBox(row=i // 2, col=i % 2, lockAspect=True, invertY=True)
            item = pg.ImageItem(axisOrder="row-major")
            vb.addItem(item)
            if first is None:
                first = vb
            else:
                vb.setXLink(first)
                vb.setYLink(first)
            level, width = WINDOWS[p]
            self.items.append((item, (level - width / 2, level + width / 2)))
            self.vols.append(vol.pixels)
        for (item, levels), px in zip(self.items, self.vols):
            item.setImage(px[0], levels=levels, autoLevels=False)
        first.autoRange()
        QApplication.processEvents()

    def run(self, slices: int) -> float:
        t = time.perf_counter()
        for k in range(1, slices + 1):
            for (item, levels), px in zip(self.items, self.vols):
                item.setImage(px[k], levels=levels, autoLevels=False)
            self.w.viewport().repaint()
        return (time.perf_counter() - t) / slices * 1000.0

    def close(self) -> None:
        self.w.close()


def startup_seconds(runs: int = 3) -> tuple[float, float]:
    """Median wall time from launching `python -m liverview` to its window being shown, and the
    median of the app's own measure (from run_viewer's start)."""
    walls, inner = [], []
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, LIVERVIEW_HOME=home, LIVERVIEW_REPORT_STARTUP="exit", QT_QPA_PLATFORM="offscreen")
        for _ in range(runs):
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "liverview"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
            for line in proc.stdout:
                if line.startswith("liverview-window-visible"):
                    walls.append(time.perf_counter() - t)
                    inner.append(float(line.split()[1]))
                    break
            proc.wait(timeout=60)
    return statistics.median(walls), statistics.median(inner)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=7, help="alternating viewer / bare passes")
    ap.add_argument("--no-startup", action="store_true", help="skip the startup measurement")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["LIVERVIEW_HOME"] = home
        from liverview.qt.app import make_app

        make_app()
        t = time.perf_counter()
        study, _ = phantom_study(args.matrix, args.slices + 10)
        print(f"phantom exam: 4 phases x {study.volumes['P'].pixels.shape} ({time.perf_counter() - t:.1f} s to render)")
        viewer, bare = Viewer(study), Bare(study)
        cold = viewer.run(args.slices)  # the first pass decodes and colours every CAM once
        bare.run(args.slices)
        pairs = []
        for _ in range(args.rounds):  # alternate, so a change in machine load hits both alike
            pairs.append((viewer.run(args.slices), bare.run(args.slices)))
        overlays = viewer.overlays()
        viewer.close()
        bare.close()
    warm = statistics.median(v for v, _ in pairs)
    peer = statistics.median(b for _, b in pairs)
    ratio = statistics.median(v / b for v, b in pairs)
    print("overlays visible at the end: " + ", ".join(f"{p}: CAM {'on' if c else 'off'}, {n} box" for p, (c, n) in overlays.items()))
    print(f"bare pyqtgraph ImageItems: {peer:.2f} ms/frame (median of {args.rounds} passes of {args.slices} slices)")
    print(f"viewer, first pass (CAMs decoded on the way): {cold:.2f} ms/frame")
    print(f"viewer: {warm:.2f} ms/frame (target <= {FRAME_TARGET_MS:.0f}) {'PASS' if warm <= FRAME_TARGET_MS else 'FAIL'}")
    ok = ratio <= RATIO_TARGET and warm <= FRAME_TARGET_MS
    if not args.no_startup:
        wall, inner = startup_seconds()
        print(f"startup to visible window: {wall:.2f} s from launch ({inner:.2f} s inside run_viewer) "
              f"(target <= {STARTUP_TARGET_S:.0f}) {'PASS' if wall <= STARTUP_TARGET_S else 'FAIL'}")
        ok = ok and wall <= STARTUP_TARGET_S
    print(f"gui_scroll: {ratio:.2f} (target <= {RATIO_TARGET}) {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
