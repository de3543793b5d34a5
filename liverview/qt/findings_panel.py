"""The findings panel: stage-1 and stage-2 results, class bars, per-composite table, attribution, model card."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QFormLayout, QGroupBox, QHeaderView, QLabel, QSizePolicy, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from liverview import RESEARCH_NOTICE
from liverview.findings.vocabulary import CLASS_NAMES, CLASSES, GROUP_OF
from liverview.study.phases import PHASES

log = logging.getLogger(__name__)
NO_FINDINGS = "No analysis yet: pick three slices per phase, then run the analysis (Ctrl+R)."
STALE_TEXT = "Out of date: the picks, boxes or phases changed since this analysis. Run the analysis again (Ctrl+R)."
GROUP_COLORS = {"benign": "#66bb6a", "malignant": "#ef5350"}


def trained_on_phantom(bundle: dict[str, Any]) -> bool:
    text = " ".join(str(bundle.get(k) or "") for k in ("training_data", "research_notice", "name")).lower()
    return "phantom" in text or "synthetic" in text


class Bar(QWidget):
    """A labelled horizontal probability bar (cheap custom paint)."""

    def __init__(self, label: str, color: str, parent=None) -> None:
        super().__init__(parent)
        self.label = label
        self.color = QColor(color)
        self.value = 0.0
        self.bold = False
        self.setMinimumHeight(20)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_value(self, value: float, bold: bool = False) -> None:
        self.value = max(0.0, min(1.0, float(value)))
        self.bold = bold
        self.setToolTip(f"{self.label}: {self.value:.3f}")
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        r = self.rect().adjusted(0, 2, -1, -2)
        p.setPen(QColor("#e0e0e0"))
        f = p.font()
        f.setBold(self.bold)
        p.setFont(f)
        # the whole label when it fits in half the row, so class names are not cut
        label_w = min(max(60, p.fontMetrics().horizontalAdvance(self.label) + 10), r.width() // 2)
        p.drawText(r.adjusted(0, 0, -(r.width() - label_w), 0), Qt.AlignmentFlag.AlignVCenter, self.label)
        bar = r.adjusted(label_w, 0, -48, 0)
        p.fillRect(bar, QColor("#303030"))
        fill = bar.adjusted(0, 0, -int(bar.width() * (1.0 - self.value)), 0)
        p.fillRect(fill, self.color)
        p.drawText(r.adjusted(r.width() - 44, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                   f"{self.value:.2f}")
        p.end()


class FindingsPanel(QWidget):
    """Shows a findings dict (Findings.to_dict() as stored in the case)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.findings: dict[str, Any] | None = None
        layout = QVBoxLayout(self)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("background:#5d4037; color:#ffe0b2; padding:4px; font-weight:bold;")
        layout.addWidget(self.notice)
        self.empty = QLabel(NO_FINDINGS)
        self.empty.setWordWrap(True)
        layout.addWidget(self.empty)
        self.stale = False
        self.stale_banner = QLabel(STALE_TEXT)
        self.stale_banner.setWordWrap(True)
        self.stale_banner.setStyleSheet("background:#424242; color:#ffcc80; padding:4px; font-weight:bold;")
        self.stale_banner.hide()
        layout.addWidget(self.stale_banner)

        self.result_box = QGroupBox("Exam result")
        form = QFormLayout(self.result_box)
        self.final = QLabel()
        self.final.setStyleSheet("font-size: 15pt; font-weight: bold;")
        self.stage1 = QLabel()
        self.stage2 = QLabel()
        for lab in (self.final, self.stage1, self.stage2):
            lab.setWordWrap(True)
        self.consistency = QLabel()
        self.consistency.setWordWrap(True)
        form.addRow("Result", self.final)
        form.addRow("Stage 1", self.stage1)
        form.addRow("Stage 2", self.stage2)
        form.addRow("", self.consistency)
        layout.addWidget(self.result_box)

        self.class_box = QGroupBox("Four class probabilities (exam average)")
        cl = QVBoxLayout(self.class_box)
        self.class_bars = {c: Bar(f"{c}  {CLASS_NAMES[c]}", GROUP_COLORS[GROUP_OF[c]]) for c in CLASSES}
        for b in self.class_bars.values():
            cl.addWidget(b)
        layout.addWidget(self.class_box)

        self.attr_box = QGroupBox("Per-phase attribution (share of |gradient x input|)")
        al = QVBoxLayout(self.attr_box)
        self.attr_bars: dict[tuple[str, str], Bar] = {}
        for stage in ("stage1", "stage2"):
            for p in PHASES:
                bar = Bar(f"{'stage 1' if stage == 'stage1' else 'stage 2'}  {p}", "#42a5f5" if stage == "stage1" else "#ab47bc")
                self.attr_bars[(stage, p)] = bar
                al.addWidget(bar)
        layout.addWidget(self.attr_box)

        self.comp_box = QGroupBox("Per composite")
        compl = QVBoxLayout(self.comp_box)
        self.table = QTableWidget(0, 7)
        self.table.setHorizontalHeaderLabels(["#", "slices (P A V D)", "box used", "p(malignant)", "stage 2", "class", "detections"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keep single-key shortcuts working
        self.table.setMinimumHeight(110)
        self.table.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        compl.addWidget(self.table)
        self.phases_label = QLabel()
        self.phases_label.setWordWrap(True)
        compl.addWidget(self.phases_label)
        layout.addWidget(self.comp_box)

        self.card_box = QGroupBox("Model card")
        cf = QFormLayout(self.card_box)
        self.card = {k: QLabel() for k in ("name", "version", "hash", "intended_use", "training_data", "notice")}
        for k, lab in self.card.items():
            lab.setWordWrap(True)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        cf.addRow("Name", self.card["name"])
        cf.addRow("Version", self.card["version"])
        cf.addRow("Manifest sha256", self.card["hash"])
        cf.addRow("Intended use", self.card["intended_use"])
        cf.addRow("Training data", self.card["training_data"])
        cf.addRow("Notice", self.card["notice"])
        layout.addWidget(self.card_box)
        layout.addStretch(1)
        self.set_bundle_card(None)
        self.set_findings(None)

    def set_bundle_card(self, bundle: dict[str, Any] | None) -> None:
        """The model card of the loaded bundle (before any analysis) or of the findings' bundle."""
        b = bundle or {}
        self.card["name"].setText(str(b.get("name") or "—"))
        self.card["version"].setText(str(b.get("version") or "—"))
        sha = str(b.get("manifest_sha256") or "")
        self.card["hash"].setText(sha[:16] + "…" if sha else "—")
        self.card["hash"].setToolTip(sha)
        self.card["intended_use"].setText(str(b.get("intended_use") or "—"))
        self.card["training_data"].setText(str(b.get("training_summary") or b.get("training_data") or "—"))
        self.card["notice"].setText(str(b.get("research_notice") or "—"))
        if bundle and trained_on_phantom(bundle):
            self.notice.setText(RESEARCH_NOTICE)
            self.notice.show()
        elif bundle:
            self.notice.setText(str(b.get("research_notice") or "Research use only."))
            self.notice.show()
        else:
            self.notice.hide()

    def set_findings(self, findings: dict[str, Any] | None) -> None:
        self.findings = findings
        have = bool(findings)
        self.empty.setText(NO_FINDINGS)
        self.empty.setVisible(not have)
        for box in (self.result_box, self.class_box, self.attr_box, self.comp_box):
            box.setVisible(have)
        if not have:
            self.set_stale(False)
            return
        try:
            self._fill(findings)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # e.g. a case file from another version
            log.warning("findings could not be shown: %r", exc)
            self.findings = None
            for box in (self.result_box, self.class_box, self.attr_box, self.comp_box):
                box.setVisible(False)
            self.empty.setText(f"The stored findings could not be shown (missing or bad field {exc}); "
                               "run the analysis again.")
            self.empty.setVisible(True)

    def set_stale(self, stale: bool) -> None:
        """Grey the result and say it is out of date (the case changed after the analysis)."""
        self.stale = bool(stale) and bool(self.findings)
        self.stale_banner.setVisible(self.stale)
        for box in (self.result_box, self.class_box, self.attr_box, self.comp_box):
            box.setEnabled(not self.stale)
        if self.findings:
            self._fill_final(self.findings["exam"])

    def _fill_final(self, exam: dict[str, Any]) -> None:
        group = exam.get("final_group", GROUP_OF.get(exam["final_class"], ""))
        text = f"{exam['final_class']}  ({CLASS_NAMES.get(exam['final_class'], '')}, {group})"
        color = "#9e9e9e" if self.stale else GROUP_COLORS.get(group, "#e0e0e0")
        self.final.setText(("out of date: " if self.stale else "") + text)
        self.final.setStyleSheet(f"font-size: 15pt; font-weight: bold; color: {color};")

    def _fill(self, findings: dict[str, Any]) -> None:
        self.set_bundle_card(findings.get("bundle"))
        exam = findings["exam"]
        self._fill_final(exam)
        self.stage1.setText(
            f"p(malignant) = {exam['p_malignant']:.3f}  → {exam['stage1_call']}  (threshold {exam.get('threshold', 0.5):.2f})"
        )
        branch = exam.get("stage2", {}).get(exam["stage1_call"], {})
        s2 = ", ".join(f"{c} {v:.3f}" for c, v in branch.items())
        self.stage2.setText(f"{exam['stage2_call']}  ({exam['stage1_call']} branch: {s2})")
        if exam.get("consistent_with_stage1", True):
            self.consistency.setText("")
        else:
            self.consistency.setText(
                f"Note: the largest of the four averaged probabilities ({exam['final_class']}) lies outside the "
                f"stage-1 call ({exam['stage1_call']})."
            )
        probs = exam.get("probabilities", {})
        best = max(probs, key=probs.get) if probs else None
        for c, bar in self.class_bars.items():
            bar.set_value(probs.get(c, 0.0), bold=c == best)
        self._fill_attribution(findings)
        self._fill_table(findings)
        used = ", ".join(findings.get("phases_used", [])) or "none"
        missing = ", ".join(findings.get("phases_missing", []))
        notes = findings.get("notes") or []
        text = f"Phases used: {used}" + (f"; missing (zero channel): {missing}" if missing else "")
        if notes:
            text += "\n" + "\n".join(notes)
        self.phases_label.setText(text)

    def _fill_attribution(self, findings: dict[str, Any]) -> None:
        sums: dict[tuple[str, str], list[float]] = {}
        for c in findings.get("composites", []):
            for stage, exp in c.get("explanations", {}).items():
                for p, v in exp.get("attribution", {}).items():
                    sums.setdefault((stage, p), []).append(float(v))
        any_attr = False
        for key, bar in self.attr_bars.items():
            values = sums.get(key)
            bar.setVisible(values is not None)
            if values:
                any_attr = True
                bar.set_value(sum(values) / len(values))
        self.attr_box.setVisible(any_attr)

    def _fill_table(self, findings: dict[str, Any]) -> None:
        comps = findings.get("composites", [])
        self.table.setRowCount(len(comps))
        for r, c in enumerate(comps):
            picks = c.get("picks", {})
            slices = " ".join(str(picks[p] + 1) if p in picks else "–" for p in PHASES)
            roi = c.get("roi", {})
            source = roi.get("source", "none")
            box = roi.get("box")
            box_text = source if box is None else f"{source} [{', '.join(f'{v:.0f}' for v in box)}]"
            s1 = c.get("stage1", {})
            s2 = c.get("stage2", {}).get(s1.get("call", ""), {})
            s2_call = max(s2, key=s2.get) if s2 else "—"
            probs = c.get("probabilities", {})
            cls = max(probs, key=probs.get) if probs else "—"
            dets = c.get("detections", [])
            det_text = f"{len(dets)}" + (f" (best {max(d['score'] for d in dets):.2f})" if dets else "")
            values = [str(c.get("index", r) + 1), slices, box_text, f"{s1.get('p_malignant', float('nan')):.3f}",
                      s2_call, cls, det_text]
            for col, v in enumerate(values):
                item = QTableWidgetItem(v)
                if col == 2:
                    item.setToolTip("user: your box was used; detected: the detector's box; none: whole slice")
                self.table.setItem(r, col, item)

    def summary(self) -> str:
        """One line of what the panel shows (for tests and the status bar)."""
        if not self.findings:
            return ""
        exam = self.findings["exam"]
        stale = " (out of date)" if self.stale else ""
        return f"{exam['final_class']} p(malignant)={exam['p_malignant']:.3f}{stale}"
