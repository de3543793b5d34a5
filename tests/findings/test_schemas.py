"""docs/schemas: what the code writes validates, broken documents do not; liverview.findings imports no torch."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(name: str, doc) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator(name).iter_errors(doc)]


@pytest.fixture(scope="module")
def findings_doc(analysed):
    """The analysis as it travels and is stored: through JSON text."""
    return json.loads(json.dumps(analysed[1].to_dict()))


def test_findings_of_a_real_analysis_validate(findings_doc):
    assert findings_doc["composites"][0]["explanations"], "the document exercises the CAM part"
    assert errors("findings", findings_doc) == []


def test_findings_with_detected_boxes_validate(tiny_bundle, make_case):
    from liverview.engine.analyze import Engine

    d = Engine(tiny_bundle).analyze(make_case(user_box=False)).to_dict()
    assert all(c["roi"]["source"] == "detected" for c in d["composites"])
    assert any(c["detections"] for c in d["composites"])
    assert errors("findings", json.loads(json.dumps(d))) == []


def test_a_version_1_document_validates_without_computed_from(findings_doc):
    old = copy.deepcopy(findings_doc)
    old["schema_version"] = 1
    del old["computed_from"]
    assert errors("findings", old) == []
    unversioned = copy.deepcopy(findings_doc)
    del unversioned["computed_from"]
    assert any("computed_from" in e for e in errors("findings", unversioned)), "version 2 must say what it was computed from"


def _broken(doc, edit):
    d = copy.deepcopy(doc)
    edit(d)
    return d


@pytest.mark.parametrize("what, edit", [
    ("string probability", lambda d: d["exam"]["probabilities"].__setitem__("HB", "0.5")),
    ("probability above 1", lambda d: d["composites"][0]["stage1"].__setitem__("p_malignant", 1.5)),
    ("negative probability", lambda d: d["composites"][0]["probabilities"].__setitem__("HH", -0.1)),
    ("missing exam block", lambda d: d.pop("exam")),
    ("missing class", lambda d: d["exam"]["probabilities"].pop("OMHT")),
    ("unknown class", lambda d: d["exam"].__setitem__("final_class", "XYZ")),
    ("unknown phase", lambda d: d["composites"][0]["picks"].__setitem__("Q", 1)),
    ("bad CAM encoding", lambda d: d["composites"][0]["explanations"]["stage1"]["cam"].__setitem__("encoding", "png")),
    ("wrong schema", lambda d: d.__setitem__("schema", "liverview.case")),
    ("bad digest", lambda d: d["computed_from"].__setitem__("digest", "not-hex")),
    ("stray field", lambda d: d["exam"].__setitem__("p_maligant", 0.3)),
])
def test_broken_findings_fail(findings_doc, what, edit):
    assert errors("findings", _broken(findings_doc, edit)), what


def default_manifest() -> dict:
    from liverview.engine.default_bundle import default_bundle_dir

    return json.loads((default_bundle_dir() / "manifest.json").read_text(encoding="utf-8"))


def test_the_default_bundle_manifest_validates():
    assert errors("manifest", default_manifest()) == []


def test_a_random_bundle_manifest_validates(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    assert errors("manifest", manifest) == []


@pytest.mark.parametrize("what, edit", [
    ("pickle weights", lambda m: m["files"].__setitem__("stage1.pt", {"sha256": "0" * 64, "size": 1})),
    ("missing sha256", lambda m: m["files"][next(iter(m["files"]))].pop("sha256")),
    ("missing threshold", lambda m: m["models"]["stage1"].pop("threshold")),
    ("threshold as text", lambda m: m["models"]["stage1"].__setitem__("threshold", "0.5")),
    ("wrong subtype classes", lambda m: m["models"]["benign"].__setitem__("classes", ["HB", "OMHT"])),
    ("phase order", lambda m: m.__setitem__("phase_order", ["A", "P", "V", "D"])),
    ("zero window width", lambda m: m["windows"].__setitem__("P", [40, 0])),
    ("detector size off the stride", lambda m: m["models"]["detector"].__setitem__("input_size", 100)),
    ("missing CAM layer", lambda m: m["models"]["malignant"].pop("cam_target_layer")),
    ("three normalisation channels", lambda m: m["models"]["stage1"]["normalisation"].__setitem__("std", [1, 1, 1])),
    ("missing name", lambda m: m.pop("name")),
])
def test_broken_manifests_fail(what, edit):
    assert errors("manifest", _broken(default_manifest(), edit)), what


def test_the_schemas_agree_with_the_vocabulary():
    from liverview.findings.vocabulary import CLASSES, GROUPS, MODEL_CLASSES
    from liverview.study.phases import PHASES

    f = json.loads((SCHEMAS / "findings.schema.json").read_text(encoding="utf-8"))
    assert f["$defs"]["class"]["enum"] == list(CLASSES)
    assert f["$defs"]["group"]["enum"] == list(GROUPS)
    assert f["$defs"]["phase"]["enum"] == list(PHASES)
    assert f["properties"]["schema_version"]["enum"][-1] == 2
    m = json.loads((SCHEMAS / "manifest.schema.json").read_text(encoding="utf-8"))
    for key, classes in MODEL_CLASSES.items():
        assert m["properties"]["models"]["properties"][key]["properties"]["classes"]["const"] == list(classes)


def test_liverview_findings_imports_no_torch_and_no_qt():
    code = ("import sys, liverview.findings; "
            "bad = [m for m in ('torch', 'PySide6', 'pyqtgraph') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
