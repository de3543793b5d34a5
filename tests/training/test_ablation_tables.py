"""Ablation tables: rows -> markdown, CSV and PNG as `python -m training ablate` writes them (no training here)."""

from __future__ import annotations

import csv
import io
import math

import matplotlib.image
import pytest

from training.ablate import to_csv, to_markdown, write_tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# the columns `ablate.augmentation` writes, with made-up values
AUG_ROWS = [
    {"backbone": "resnet18", "augmentation": "none", "exams": 17, "auc": 0.8125, "auc_ci_t_lo": 0.7,
     "auc_ci_t_hi": 0.9, "accuracy": 0.75},
    {"backbone": "resnet18", "augmentation": "pkcp-mixup", "exams": 17, "auc": 0.96875, "auc_ci_t_lo": 0.9,
     "auc_ci_t_hi": 1.0, "accuracy": 0.9375},
    {"backbone": "vit", "augmentation": "none", "exams": 17, "auc": float("nan"), "auc_ci_t_lo": float("nan"),
     "auc_ci_t_hi": float("nan"), "accuracy": 0.5},
]
DET_ROWS = [
    {"configuration": "single-phase single-slice", "test_images": 51, "map": 0.61, "precision": 0.7,
     "recall": 0.6, "f1": 0.65},
    {"configuration": "4-phase PKCP, with rebalance", "test_images": 51, "map": 0.93, "precision": 0.9,
     "recall": 0.95, "f1": 0.92},
]


def _table(md: str) -> list[list[str]]:
    """The cells of each markdown table line (header, separator, rows)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]


def test_markdown_has_the_title_note_header_and_one_line_per_row():
    md = to_markdown(AUG_ROWS, "Stage 1 by augmentation", "exam-level, test cohort")
    lines = md.splitlines()
    assert lines[0] == "## Stage 1 by augmentation"
    assert "exam-level, test cohort" in lines
    table = _table(md)
    assert table[0] == list(AUG_ROWS[0])
    assert all(set(c) <= {"-"} and c for c in table[1]) and len(table[1]) == len(AUG_ROWS[0])
    assert table[2:] == [
        ["resnet18", "none", "17", "0.812", "0.700", "0.900", "0.750"],
        ["resnet18", "pkcp-mixup", "17", "0.969", "0.900", "1.000", "0.938"],
        ["vit", "none", "17", "n/a", "n/a", "n/a", "0.500"],  # NaN (e.g. one-class test set) reads n/a
    ]


def test_markdown_of_no_rows_says_so():
    assert to_markdown([], "Empty") == "## Empty\n\n(no rows)\n"


def test_csv_round_trips_through_dictreader_at_full_precision():
    back = list(csv.DictReader(io.StringIO(to_csv(AUG_ROWS))))
    assert len(back) == len(AUG_ROWS)
    for got, want in zip(back, AUG_ROWS):
        assert list(got) == list(want)
        for key, value in want.items():
            if isinstance(value, float):
                assert (math.isnan(float(got[key])) and math.isnan(value)) or float(got[key]) == value, key
            else:
                assert got[key] == str(value), key
    assert to_csv([]) == ""


@pytest.mark.parametrize("which, rows", [("augmentation", AUG_ROWS), ("detection", DET_ROWS)])
def test_write_tables_writes_markdown_csv_and_png(tmp_path, which, rows):
    out = tmp_path / "tables"  # created on demand
    write_tables(rows, out, which, f"{which} ablation", "synthetic")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{which}.{ext}" for ext in ("csv", "md", "png"))
    assert (out / f"{which}.md").read_text(encoding="utf-8") == to_markdown(rows, f"{which} ablation", "synthetic")
    with open(out / f"{which}.csv", newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    assert [r[next(iter(rows[0]))] for r in back] == [str(r[next(iter(rows[0]))]) for r in rows]
    png = out / f"{which}.png"
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    pixels = matplotlib.image.imread(png)  # decodes: a whole image, not just a header
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.05, "a blank image: no bars were drawn"
