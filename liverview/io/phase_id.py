"""Tell the contrast phases (P, A, V, D) apart from descriptions, contrast tags and acquisition times.

Every guess carries its evidence as readable strings and a confidence in [0, 1]:

- series description keywords in the usual vendor spellings (and a few Chinese and German
  ones): strongest evidence;
- seconds after ContrastBolusStartTime (arterial 10-40 s, portal venous 40-100 s, delayed
  later): strong;
- contrast bolus tags present (contrast phase) or absent while other series carry them
  (pre-contrast);
- acquisition order: pre-contrast first, then arterial, portal venous, delayed;
- the pixels (io/kinetics.py): aorta, portal vein and liver HU measured on three slices of
  each candidate series, fitted to each phase's typical enhancement: strong, and the only
  evidence a series without keywords, times or tags has. The measured HU are an evidence
  line of every candidate, so `liverview info` and the phase dialog show them. It decodes
  three slices per candidate series during the scan (about 20-40 ms a series for native
  512 x 512 data, more for compressed syntaxes).

A confidence below liverview.study.case.GUESSED_BELOW marks the phase as guessed.

The four phases are assigned jointly (one series per phase) by maximising the summed
evidence, with a penalty for an assignment whose acquisition times run against the phase
order. Exams with more than four candidate series keep the rest as candidates.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from liverview.io.kinetics import Kinetics, measure_series, phase_line
from liverview.io.series import PhaseGuess, SeriesRecord, StudyRecord
from liverview.study.phases import PHASE_NAMES, PHASES

# (pattern, phase) in matching order; phrases first so "late arterial" is not read as "late".
# Matched on the lower-cased description with separators turned into spaces, except the
# patterns marked raw (they need the punctuation).
_PHRASES: list[tuple[str, str]] = [
    (r"\b(?:early|late|hepatic|lat)\s*arterial\b", "A"),
    (r"\bportal\s*venous\b|\bporto\s*venous\b|\bportovenous\b|\bportalvenous\b", "V"),
    (r"\bnon\s*contrast\b|\bnoncontrast\b|\bnon\s*con\b|\bwithout\s+contrast\b|\bpre\s*contrast\b|\bprecontrast\b", "P"),
    (r"\bun\s*enhanced\b|\bunenhanced\b|\bnon\s*enhanced\b|\bplain\s+scan\b", "P"),
    (r"\b\d+(?:\.\d+)?\s*min(?:ute)?s?\b", "D"),
]
_RAW: list[tuple[str, str]] = [
    (r"\bw/?o\b(?:\s*contrast)?", "P"),
    (r"(?:^|[\s_(\[])c-(?=$|[\s_)\]])", "P"),
    (r"平扫|非增强|平掃", "P"),
    (r"动脉|動脈", "A"),
    (r"门脉|门静脉|門脈|静脉期|靜脈期", "V"),
    (r"延迟|延時|延遲|平衡期", "D"),
]
_WORDS: list[tuple[str, str]] = [
    (r"\bpre\b|\bplain\b|\bnative?\b|\bnc\b|\bncct\b|\bnect\b|\bnoncon\b|\bpc\b", "P"),
    (r"\barterial\b|\barteriell\w*\b|\bart\b|\bap\b|\bhap\b|\beap\b|\blap\b|\bangio\b|\bcta\b", "A"),
    (r"\bportal\b|\bvenous\b|\bven[oö]s\w*\b|\bpv\b|\bpvp\b|\bven\b|\bportal\s*phase\b", "V"),
    (r"\bdelayed?\b|\bdelay\b|\bequilibrium\b|\bequil\b|\beq\b|\blate\b|\bdp\b|\bexcretory\b|\bspät\w*\b", "D"),
]
_CONTRAST_WORDS = r"\bc\+|\bwith\s+contrast\b|\bw/\s*contrast\b|\bpost\s*contrast\b|\bpostcontrast\b|\benhanced\b|增强"

_W_KEYWORD = 3.0
_W_BOLUS_DELTA = 2.0
_W_TAGS = 2.5
_W_ORDER = 2.0
_W_FILL = 1.0
_W_KINETICS = 2.5  # times the phase's posterior from the measured HU; a keyword (3.0) still outweighs a weak fit
# seconds after ContrastBolusStartTime: arterial, portal venous, delayed
_BOLUS_WINDOWS = {"A": (5.0, 40.0), "V": (40.0, 100.0), "D": (100.0, 3600.0)}


def keyword_phases(text: str) -> dict[str, list[str]]:
    """Phase -> the words in `text` that name it (the description's own spelling)."""
    found: dict[str, list[str]] = {}
    low = text.lower()
    for pattern, phase in _RAW:
        for m in re.finditer(pattern, low):
            found.setdefault(phase, []).append(m.group(0).strip(" _([)]"))
        low = re.sub(pattern, " ", low)
    norm = re.sub(r"[_\-/\\.,;:()\[\]{}|+#*]+", " ", low)
    for pattern, phase in _PHRASES:
        for m in re.finditer(pattern, norm):
            found.setdefault(phase, []).append(m.group(0).strip())
        norm = re.sub(pattern, " ", norm)
    for pattern, phase in _WORDS:
        for m in re.finditer(pattern, norm):
            found.setdefault(phase, []).append(m.group(0).strip())
    return found


def says_contrast(text: str) -> bool:
    low = text.lower()
    return bool(re.search(_CONTRAST_WORDS, low)) and not re.search(r"un\s*enhanced|non\s*enhanced|non\s*contrast", low)


@dataclass
class _Evidence:
    scores: dict[str, float]
    lines: dict[str, list[str]]  # phase -> evidence for it (or against it, worded so)
    keyword: set[str]
    bolus: str | None
    has_tags: bool
    kinetics: Kinetics | None = None


def _series_evidence(s: SeriesRecord, others_with_tags: int, kinetics: Kinetics | None = None) -> _Evidence:
    scores = {p: 0.0 for p in PHASES}
    lines: dict[str, list[str]] = {p: [] for p in PHASES}
    text, field = s.description, "description"
    if not text:
        text, field = str(s.headers[0].ds.get("ProtocolName", "") or ""), "protocol name"
    found = keyword_phases(text)
    for phase, words in found.items():
        scores[phase] += _W_KEYWORD
        quoted = ", ".join(f"'{w}'" for w in dict.fromkeys(words))
        lines[phase].append(f"{field} '{text}' names {PHASE_NAMES[phase]} ({quoted})")
    if not found and text and says_contrast(text):
        for p in "AVD":
            scores[p] += 0.5
            lines[p].append(f"{field} '{text}' says contrast-enhanced")
        scores["P"] -= 1.0
        lines["P"].append(f"{field} '{text}' says contrast-enhanced (against pre-contrast)")
    has_tags = bool(s.contrast_tags)
    if has_tags:
        tag, value = next(iter(s.contrast_tags.items()))
        shown = f"{tag}='{value}'" if value != "present" else tag
        scores["P"] -= _W_TAGS
        lines["P"].append(f"contrast bolus tags present ({shown}) (against pre-contrast)")
        for p in "AVD":
            scores[p] += 0.5
            lines[p].append(f"contrast bolus tags present ({shown})")
    elif others_with_tags:
        scores["P"] += 1.5
        lines["P"].append(f"no contrast bolus tags while {others_with_tags} other series carry them")
        for p in "AVD":
            scores[p] -= 1.0
    bolus = None
    if s.bolus_start is not None and s.time is not None:
        delta = (s.time - s.bolus_start).total_seconds()
        if -43200 < delta < 0:
            bolus = "P"
            scores["P"] += _W_BOLUS_DELTA
            lines["P"].append(f"acquired {-delta:.0f} s before the contrast bolus start")
        else:
            for p, (lo, hi) in _BOLUS_WINDOWS.items():
                if lo <= delta < hi:
                    bolus = p
                    scores[p] += _W_BOLUS_DELTA
                    lines[p].append(
                        f"acquired {delta:.0f} s after the contrast bolus start ({PHASE_NAMES[p]}: {lo:g}-{hi:g} s)"
                    )
    if kinetics is not None:
        line = phase_line(kinetics)
        for p in PHASES:
            scores[p] += _W_KINETICS * kinetics.posterior.get(p, 0.0)
            lines[p].append(line)
    return _Evidence(scores, lines, set(found), bolus, has_tags, kinetics)


def _quality(s: SeriesRecord) -> tuple[float, list[str]]:
    """How good a phase volume the series makes, to choose among more than four candidates."""
    q = 0.2 * math.log10(max(s.n_slices, 1))  # 0.2 for 10 slices, 0.4 for 100
    notes = []
    it = s.image_type
    if "DERIVED" in it or "SECONDARY" in it:
        q -= 0.5
        notes.append("derived/secondary image type")
    if re.search(r"\b(mip|minip|mpr|vr|vrt|3d|cor|coronal|sag|sagittal|oblique|recon)\b", s.description.lower()):
        q -= 0.5
        notes.append("reformat/MIP description")
    ori = s.slices[0].orientation if s.slices else None
    if ori is not None:
        normal = abs(ori[0] * ori[4] - ori[1] * ori[3])  # z of row x column
        if normal < 0.8:
            q -= 0.7
            notes.append("not axial")
    if not s.uniform:
        q -= 0.3
        notes.append("non-uniform spacing")
    return q, notes


def _order_term(assigned: dict[str, SeriesRecord]) -> tuple[float, list[tuple[str, str]]]:
    """Penalty for pairs of phases acquired against the P, A, V, D order; the pairs at fault."""
    penalty = 0.0
    bad = []
    timed = [(p, s.time) for p, s in assigned.items() if s.time is not None]
    for (p1, t1), (p2, t2) in itertools.combinations(timed, 2):
        if (PHASES.index(p1) < PHASES.index(p2)) != (t1 < t2) or t1 == t2:
            penalty += _W_ORDER
            bad.append((p1, p2))
    return penalty, bad


def assign_phases(study: StudyRecord, fixed: dict[str, str] | None = None, pixels: bool = True) -> dict[str, str]:
    """Assign phases to the study's candidate series, set every series' guess, return phase -> uid.

    `fixed` (phase -> series uid) is taken as given (a person's override); the remaining
    phases are assigned among the remaining candidates. With `pixels` each candidate's
    enhancement is measured on a few decoded slices (io/kinetics.py) and weighs in.
    """
    fixed = dict(fixed or {})
    cands = [s for s in study.candidates if s.uid not in fixed.values()]
    with_tags = sum(1 for s in study.candidates if s.contrast_tags)
    evidence = {
        s.uid: _series_evidence(s, with_tags - (1 if s.contrast_tags else 0), measure_series(s) if pixels else None)
        for s in study.candidates
    }
    quality = {s.uid: _quality(s) for s in study.candidates}
    free = [p for p in PHASES if p not in fixed]

    def unit(s: SeriesRecord, p: str) -> float:
        return evidence[s.uid].scores[p] + quality[s.uid][0] + _W_FILL

    # keep the few best candidates per phase so the joint search stays small
    shortlist = {p: sorted(cands, key=lambda s: -unit(s, p))[:6] for p in free}
    fixed_series = {p: study.series_by_uid(uid) for p, uid in fixed.items()}
    best: tuple[float, dict[str, SeriesRecord]] = (-math.inf, {})
    for combo in itertools.product(*[[None, *shortlist[p]] for p in free]):
        chosen = [s for s in combo if s is not None]
        if len({s.uid for s in chosen}) != len(chosen):
            continue
        assigned = {p: s for p, s in zip(free, combo) if s is not None}
        score = sum(unit(s, p) for p, s in assigned.items())
        penalty, _ = _order_term({**{p: s for p, s in fixed_series.items() if s is not None}, **assigned})
        total = score - penalty
        # ties: prefer more phases, then earlier-acquired series for earlier phases
        if total > best[0] + 1e-9 or (abs(total - best[0]) <= 1e-9 and len(assigned) > len(best[1])):
            best = (total, assigned)
    assigned = {**{p: s for p, s in fixed_series.items() if s is not None}, **best[1]}
    _, bad_pairs = _order_term(assigned)
    timed = sorted((s.time, p) for p, s in assigned.items() if s.time is not None)
    rank = {p: i for i, (_, p) in enumerate(timed)}

    for s in study.series:
        if s.uid not in evidence:
            s.guess = PhaseGuess(phase=None, evidence=[f"not offered as a phase: {s.not_offered}"], confidence=0.0)
            continue
        ev = evidence[s.uid]
        phase = next((p for p, a in assigned.items() if a is s), None)
        if phase is None:
            top = max(PHASES, key=lambda p: ev.scores[p])
            lines = [f"candidate, not used: looks most like {PHASE_NAMES[top]}"] + ev.lines[top] + quality[s.uid][1]
            s.guess = PhaseGuess(None, lines, 0.0, dict(ev.scores))
            continue
        lines = list(ev.lines[phase])
        conf = 0.3
        if phase in ev.keyword:
            conf += 0.45
        if ev.bolus == phase:
            conf += 0.25
        if (phase == "P") != ev.has_tags and (ev.has_tags or with_tags):
            conf += 0.1
        if phase == "P" and ev.has_tags:
            conf -= 0.3
        others = [p for p in ev.keyword if p != phase]
        if others:
            conf -= 0.25
            lines.append("description also names " + ", ".join(PHASE_NAMES[p] for p in others))
        kin = ev.kinetics
        if kin is not None and kin.phase is not None:
            if kin.phase == phase:
                conf += 0.4 * max(0.0, kin.posterior[phase] - 0.25) / 0.75
            elif kin.posterior.get(phase, 0.0) < 0.1:
                conf -= 0.2
                lines.append(f"the measured enhancement looks {PHASE_NAMES[kin.phase]}, not {PHASE_NAMES[phase]}")
        if phase in rank:
            t = s.time.strftime("%H:%M:%S")
            lines.append(f"acquired {_ordinal(rank[phase] + 1)} of {len(timed)} assigned series ({t})")
            faults = [pair for pair in bad_pairs if phase in pair]
            if faults:
                conf -= 0.2
                other = [q for pair in faults for q in pair if q != phase]
                lines.append("acquisition time out of phase order with " + ", ".join(sorted(set(other))))
            elif len(timed) > 1:
                conf += 0.1
        if not lines:
            lines.append("no description keyword, contrast tag or time: assigned in series order")
        if fixed.get(phase) == s.uid:
            lines.insert(0, "set by user")
            conf = 1.0
        s.guess = PhaseGuess(phase, lines, round(min(max(conf, 0.05), 0.99 if fixed.get(phase) != s.uid else 1.0), 2), dict(ev.scores))
    study.phases = {p: assigned[p].uid for p in PHASES if p in assigned}
    return dict(study.phases)


def _ordinal(n: int) -> str:
    return f"{n}{'tsnrhtdd'[(n // 10 % 10 != 1) * (n % 10 < 4) * n % 10::4]}"
