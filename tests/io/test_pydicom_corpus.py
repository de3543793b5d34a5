"""Every file of pydicom's test corpus (and pydicom-data's) through the loader: it loads or says why.

Only files already on disk are used: pydicom's own test_files folder and the installed
pydicom-data package's data folder (never get_testdata_file, which may download).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from liverview.io import ExamError, scan
from liverview.io.headers import fast_values, read_dataset, read_header
from liverview.io.loader import load_series

CAP = 256 * 1024**2  # keeps the run short: larger series are refused before decoding


def corpus_files() -> list[Path]:
    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    spec = importlib.util.find_spec("data_store")  # the pydicom-data package
    if spec is not None and spec.origin:
        folders.append(Path(spec.origin).parent / "data")
    return sorted(p for d in folders if d.is_dir() for p in d.rglob("*") if p.is_file())


def _reason(text: str) -> str:
    """The reason in a problem line, without the series, file names and numbers."""
    import re

    if "not loadable: " in text:
        text = text.split("not loadable: ", 1)[1]
    elif "could not be decoded" in text:
        text = "could not be decoded: " + re.split(r"/\S+?: ", text, maxsplit=1)[-1]
    else:
        text = re.sub(r"^.*?/\S+: ", "", text)
    text = re.sub(r"\d+(\.\d+)*", "N", text)
    return text[:150]


@pytest.fixture(scope="module")
def outcomes():
    """Per file: ('loaded', volumes) or ('refused', [one-line reasons]); exceptions are recorded, not raised."""
    results = {}
    for f in corpus_files():
        try:
            result = scan(f, max_pixel_bytes=CAP)
        except ExamError as exc:
            results[f] = ("refused", [str(exc)], [])
            continue
        except Exception as exc:  # noqa: BLE001 - a raise out of the loader is what this test looks for
            results[f] = ("raised", [f"{type(exc).__name__}: {exc}"], [])
            continue
        reasons = [f"{p}: {why}" for p, why in result.skipped]
        volumes = []
        for series in result.series:
            try:
                vol, problems = load_series(series)
            except Exception as exc:  # noqa: BLE001
                results[f] = ("raised", [f"{type(exc).__name__}: {exc}"], [])
                break
            decode_failed = [p for p in problems if "could not be decoded" in p]
            if vol is None or decode_failed:
                reasons.extend(problems if vol is None else decode_failed)
            else:
                volumes.append((series, vol))
        else:
            if not result.series and not reasons:
                reasons.extend(result.problems)
            results[f] = ("loaded" if volumes else "refused", reasons, volumes)
    return results


def test_every_corpus_file_loads_or_says_why(outcomes, corpus_summary):
    files = corpus_files()
    assert len(files) > 100, "pydicom's test files should be on disk"
    raised = {f: r for f, (kind, r, _) in outcomes.items() if kind == "raised"}
    assert not raised, f"the loader raised on: {raised}"
    counts: Counter = Counter()
    for f, (kind, reasons, volumes) in outcomes.items():
        if kind == "loaded":
            counts["loaded"] += 1
            for _, vol in volumes:
                assert vol.ready.all(), f
                assert np.isfinite(vol.pixels).all(), f
            continue
        assert reasons, f"{f}: refused without a reason"
        for line in reasons:
            assert "\n" not in line, line
            assert f.name in line or str(f.parent) in line or "series" in line, line
        counts["refused: " + _reason(reasons[0])] += 1
    summary = [f"pydicom corpus: {len(files)} files, {counts['loaded']} loaded, "
               f"{len(files) - counts['loaded']} refused"]
    summary += [f"  {n:4d}  {reason}" for reason, n in counts.most_common() if reason != "loaded"]
    print("\n".join(summary))
    corpus_summary.extend(summary)
    assert counts["loaded"] >= 80  # pydicom's corpus holds about 90 loadable monochrome files


def test_quick_header_agrees_with_pydicom(outcomes):
    """The quick header reader gives pydicom's values and pixel offsets wherever it applies."""
    compared = 0
    for f in corpus_files():
        h = read_header(f)
        if isinstance(h, str) or h._ds is not None:  # skipped, or read by pydicom in the first place
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_dataset(str(f))  # what the pydicom path of read_header parses
        assert h.v == fast_values(ds), f
        if h.pixel_offset is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = pydicom.dcmread(f)
            with open(f, "rb") as fp:
                fp.seek(h.pixel_offset)
                assert fp.read(h.pixel_length) == full.PixelData, f
        assert h.transfer_syntax == ds.file_meta.TransferSyntaxUID, f
        compared += 1
    assert compared > 80


def test_loaded_hu_agree_with_pydicom(outcomes):
    """Single-frame monochrome slices: the volume holds apply_modality_lut(pixel_array)."""
    checked = 0
    for f, (kind, _, volumes) in outcomes.items():
        for series, vol in volumes:
            if series.n_files != 1 or series.headers[0].frames != 1 or series.slices[0].plan is None:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ds = pydicom.dcmread(series.headers[0].path)
                    expect = apply_modality_lut(ds.pixel_array, ds)
                except Exception:  # noqa: BLE001 - pydicom cannot give a reference for this file
                    continue
            got = vol.pixels[0]
            if vol.pixels.dtype == np.int16:
                expect = np.clip(expect, -32768, 32767)
            np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-3, err_msg=str(f))
            checked += 1
    assert checked > 30

