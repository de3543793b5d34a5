"""Hostile bundles: each attack is refused with one line naming the manifest field or file, and nothing of it runs."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from liverview.engine.bundle import SEAL, BundleError, load_bundle, seal_manifest

MB = 1 << 20


@pytest.fixture
def bundle(tmp_path, tiny_bundle) -> Path:
    """A fresh copy of the tiny random bundle (sealed, every checksum right) to attack."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write(folder: Path, manifest: dict | str | bytes) -> None:
    """The attacker writes the manifest and seals it: what is tested is the field checks, not the seal."""
    data = manifest if isinstance(manifest, (str, bytes)) else json.dumps(manifest, indent=2)
    (folder / "manifest.json").write_bytes(data.encode() if isinstance(data, str) else data)
    seal_manifest(folder)


def _refused(folder: Path, *needles: str) -> str:
    with pytest.raises(BundleError) as err:
        load_bundle(folder)
    msg = str(err.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def _peak_rss_mb() -> float:
    # ru_maxrss is in kB on Linux: the process's peak, so a big allocation during the load would raise it
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the detector description --------------------------------------------------------------


def _own_description() -> dict:
    from liverview.engine.yolo import detector_cfg

    return json.loads(json.dumps(detector_cfg("yolov8n")))


def _payload(marker: Path) -> str:
    # creates the marker, then hands ultralytics a working activation so that a build would go on
    return f"(__import__('pathlib').Path({str(marker)!r}).touch(), __import__('torch').nn.SiLU())[1]"


def test_control_ultralytics_evals_the_activation_of_a_description(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    marker = tmp_path / "control-marker"
    DetectionModel({**_own_description(), "activation": _payload(marker)}, ch=4, nc=1, verbose=False)
    assert marker.exists(), "the payload runs when ultralytics sees it: the attack test below means something"


def test_activation_injection_is_refused_before_ultralytics_sees_it(tmp_path, bundle):
    from liverview.engine.analyze import Engine
    from liverview.engine.yolo import detector_from_state

    marker = tmp_path / "marker"
    m = _manifest(bundle)
    m["models"]["detector"]["yaml"] = {**_own_description(), "activation": _payload(marker)}
    _write(bundle, m)  # every weight checksum still right, the manifest sealed
    _refused(bundle, "models.detector.yaml.activation: not allowed")
    with pytest.raises(BundleError, match=r"models\.detector\.yaml\.activation"):
        Engine(bundle)
    with pytest.raises(ValueError, match="activation"):  # the detector builder refuses it on its own too
        detector_from_state(m["models"]["detector"]["yaml"], {}, 4, 1)
    assert not marker.exists()


@pytest.mark.parametrize("edit, needle", [
    (lambda y: y["backbone"][0].__setitem__(2, "__import__('os').system"), "yaml.backbone[0][2] (module)"),
    (lambda y: y["head"][0][3].__setitem__(2, "__import__('os')"), "yaml.head[0][3][2]"),
    (lambda y: y["backbone"][1].__setitem__(3, [128.5, 3, 2]), "yaml.backbone[1][3][0]"),
    (lambda y: y.__setitem__("scales", {"n": [0.33, 0.25, "1024"]}), "yaml.scales.n"),
    (lambda y: y["head"][2].__setitem__(1, 16), "not the engine's yolov8n (head[2] differs"),
    (lambda y: y["scales"].__setitem__("n", [1.0, 1.25, 512]), "not the engine's yolov8n (scales.n"),
])
def test_a_description_outside_the_allow_list_or_unlike_the_engine_network_is_refused(bundle, edit, needle):
    m = _manifest(bundle)
    y = _own_description()
    edit(y)
    m["models"]["detector"]["yaml"] = y
    _write(bundle, m)
    _refused(bundle, "models.detector.", needle)


def test_the_engine_own_description_still_loads_and_builds_the_same_detector(bundle):
    from liverview.engine.yolo import detector_from_state

    m = _manifest(bundle)
    m["models"]["detector"]["yaml"] = _own_description()
    _write(bundle, m)
    b = load_bundle(bundle)
    sd = b.state_dict("detector")
    x = torch.rand(1, 4, 64, 64)
    by_name = detector_from_state("yolov8n", sd)(x)[0]
    by_description = detector_from_state(b.model("detector")["yaml"], sd)(x)[0]
    assert torch.equal(by_name, by_description)


# --- the manifest's shape ------------------------------------------------------------------


def test_5000_levels_of_nesting_are_refused_before_parsing(bundle):
    m = _manifest(bundle)
    text = json.dumps({**m, "metrics": "HOLE"}).replace('"HOLE"', "[" * 5000 + "]" * 5000)
    _write(bundle, text)
    _refused(bundle, "manifest.json: nested more than 64 levels deep (refused before parsing)")
    _write(bundle, '{"a":' * 5000 + "1" + "}" * 5000)
    _refused(bundle, "nested more than 64 levels deep")


def test_a_huge_manifest_is_refused_by_its_size_unread(bundle):
    with open(bundle / "manifest.json", "r+b") as fh:
        fh.truncate(64 * MB)  # sparse: no disk used
    (bundle / SEAL).unlink()
    before = _peak_rss_mb()
    _refused(bundle, "manifest.json", "67108864 bytes, more than the 4194304", "(not read)")
    assert _peak_rss_mb() - before < 32


@pytest.mark.parametrize("key, needle", [
    ("detector", "models.detector.input_size: 100000 is outside 32..1024"),
    ("stage1", "models.stage1.input_size: 100000 is outside 16..1024"),
])
def test_a_160_gb_input_size_is_refused_before_anything_is_allocated(bundle, key, needle):
    from liverview.engine.analyze import Engine

    m = _manifest(bundle)
    m["models"][key]["input_size"] = 100000  # 4 x 100000 x 100000 float32 is 160 GB
    _write(bundle, m)
    before = _peak_rss_mb()
    _refused(bundle, needle)
    with pytest.raises(BundleError, match=needle.replace(".", r"\.")):
        Engine(bundle)
    assert _peak_rss_mb() - before < 256


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m["windows"].__setitem__("P", ["40", "250"]), "windows.P: expected [level, width] as two finite numbers"),
    (lambda m: m.__setitem__("windows", "40,250"), "windows: expected an object"),
    (lambda m: m["windows"].__setitem__("A", [45.0, 0.0]), "windows.A[1] (width): 0.0 is outside (0..8192"),
    (lambda m: m["models"]["stage1"]["normalisation"].__setitem__("std", None), "models.stage1.normalisation.std: expected 4 numbers, got None"),
    (lambda m: m["models"]["benign"]["normalisation"]["std"].__setitem__(2, None), "models.benign.normalisation.std[2]: expected a finite number, got None"),
    (lambda m: m["models"]["benign"]["normalisation"]["std"].__setitem__(0, 0.0), "models.benign.normalisation.std[0]: 0.0 is outside"),
    (lambda m: m["models"]["malignant"]["normalisation"]["mean"].__setitem__(1, float("nan")), "models.malignant.normalisation.mean[1]: expected a finite number, got nan"),
    (lambda m: m["models"]["stage1"].__setitem__("threshold", 1.5), "models.stage1.threshold: 1.5 is outside 0..1"),
    (lambda m: m["models"]["stage1"].__setitem__("threshold", "0.5"), "models.stage1.threshold: expected a finite number, got '0.5'"),
    (lambda m: m["models"]["detector"].__setitem__("conf", -0.1), "models.detector.conf: -0.1 is outside 0..1"),
    (lambda m: m["models"]["detector"].__setitem__("iou", True), "models.detector.iou: expected a finite number, got True"),
    (lambda m: m["models"]["detector"].__setitem__("input_size", 100), "models.detector.input_size: 100 is not a multiple of 32"),
    (lambda m: m["models"]["detector"].__setitem__("input_size", 64.0), "models.detector.input_size: expected an integer, got 64.0"),
    (lambda m: m["models"]["detector"].__setitem__("arch", "yolov8x"), "models.detector.arch: expected one of yolov8n, yolov8s, yolov8m"),
    (lambda m: m["models"]["detector"].__setitem__("nc", 80), "models.detector.nc: 80 is outside 1..1"),
    (lambda m: m["models"]["benign"].__setitem__("roi_margin", 7), "models.benign.roi_margin: 7 is outside 0..1"),
    (lambda m: m["models"]["benign"].__setitem__("cam_target_layer", "layer9"), "models.benign.cam_target_layer: 'layer9' is not a module of the resnet18 network"),
    (lambda m: m["models"]["benign"].__setitem__("cam_target_layer", "__class__.__init__"), "models.benign.cam_target_layer: '__class__.__init__' is not a module"),
    (lambda m: m["models"]["stage1"].__setitem__("cam_target_layer", ["layer4"]), "models.stage1.cam_target_layer: expected a dotted module name"),
    (lambda m: m["models"]["malignant"].__setitem__("classes", ["HB", "HCC"]), "models.malignant.classes: expected ['HB', 'OMHT']"),
    (lambda m: m["models"]["stage1"]["arch_args"].__setitem__("layers", [100000, 1, 1, 1]), "models.stage1.arch_args.layers[0]: 100000 is outside 1..8"),
    (lambda m: m["models"]["stage1"]["arch_args"].__setitem__("eval", 1), "models.stage1.arch_args.eval: not an argument of resnet18"),
    (lambda m: m.__setitem__("name", ["x"]), "name: expected a non-empty string, got ['x']"),
    (lambda m: m["files"][next(iter(m["files"]))].__setitem__("size", -1), ".size: -1 is outside 0..1073741824"),
    (lambda m: m["files"][next(iter(m["files"]))].__setitem__("sha256", None), ".sha256: expected 64 lower-case hex digits, got None"),
    (lambda m: m.__setitem__("models", []), "models: expected an object, got []"),
])
def test_wrong_types_and_ranges_are_named(bundle, edit, needle):
    m = _manifest(bundle)
    edit(m)
    _write(bundle, m)
    _refused(bundle, needle)


def test_a_nul_byte_in_a_file_name_is_named(bundle):
    m = _manifest(bundle)
    name = "stage1\x00.safetensors"
    m["files"][name] = m["files"].pop("stage1.safetensors")
    m["models"]["stage1"]["file"] = name
    _write(bundle, m)
    _refused(bundle, "manifest.json: files: 'stage1\\x00.safetensors' must be a plain file name inside the bundle")


@pytest.mark.parametrize("name", ["../stage1.safetensors", "sub/stage1.safetensors", "..\\stage1.safetensors", "/etc/x.safetensors"])
def test_a_file_name_that_leaves_the_bundle_is_named(bundle, name):
    m = _manifest(bundle)
    m["files"][name] = m["files"].pop("stage1.safetensors")
    m["models"]["stage1"]["file"] = name
    _write(bundle, m)
    _refused(bundle, "files:", "must be a plain file name inside the bundle")


# --- the weight files ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_link_to_dev_zero_as_weight_file_is_refused_unread(bundle):
    (bundle / "stage1.safetensors").unlink()
    os.symlink("/dev/zero", bundle / "stage1.safetensors")
    m = _manifest(bundle)
    m["files"]["stage1.safetensors"]["size"] = 1 << 30  # the declared size allows the most a weight file may have
    _write(bundle, m)
    before = _peak_rss_mb()
    _refused(bundle, "stage1.safetensors: refused: a symbolic link to '/dev/zero' (outside the bundle folder)", "(not read)")
    assert _peak_rss_mb() - before < 256


@pytest.mark.timeout(30)
def test_a_fifo_as_weight_file_is_refused_without_hanging(bundle):
    (bundle / "benign.safetensors").unlink()
    os.mkfifo(bundle / "benign.safetensors")
    _refused(bundle, "benign.safetensors: refused: a FIFO, not a regular file (not read)")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", ["manifest.json", SEAL])
def test_a_fifo_as_manifest_or_seal_is_refused_without_hanging(bundle, name):
    (bundle / name).unlink()
    os.mkfifo(bundle / name)
    _refused(bundle, f"{name}: refused: a FIFO, not a regular file")


def test_a_link_out_of_the_bundle_is_refused_even_with_the_right_bytes(tmp_path, bundle):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(bundle / "malignant.safetensors", outside)  # same bytes: the checksum would pass
    os.symlink(outside, bundle / "malignant.safetensors")
    _refused(bundle, "malignant.safetensors: refused: a symbolic link to", "(outside the bundle folder)")
    (bundle / "malignant.safetensors").unlink()
    shutil.move(outside, bundle / "kept.bin")
    os.symlink("kept.bin", bundle / "malignant.safetensors")  # links inside the bundle are refused too
    _refused(bundle, "malignant.safetensors: refused: a symbolic link to 'kept.bin' (inside the bundle folder)")


def test_a_weight_file_of_another_size_is_refused_before_it_is_read(bundle):
    with open(bundle / "detector.safetensors", "r+b") as fh:
        fh.truncate(512 * MB)  # sparse
    before = _peak_rss_mb()
    _refused(bundle, "detector.safetensors: size mismatch", "(not read)")
    assert _peak_rss_mb() - before < 256


# --- the seal ------------------------------------------------------------------------------


def _positions(n: int, count: int = 20) -> list[int]:
    return [round(i * (n - 1) / (count - 1)) for i in range(count)]


def test_every_one_of_20_byte_flips_in_the_manifest_is_refused(bundle):
    raw = (bundle / "manifest.json").read_bytes()
    seal = (bundle / SEAL).read_bytes()
    whitespace = 0
    for pos in _positions(len(raw)):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        whitespace += raw[pos : pos + 1] in (b" ", b"\n")
        (bundle / "manifest.json").write_bytes(bytes(flipped))
        assert (bundle / SEAL).read_bytes() == seal  # the flip alone, as on a bad disk or a bad copy
        with pytest.raises(BundleError) as err:
            load_bundle(bundle)
        assert "manifest.json" in str(err.value), pos
    # the seal covers the raw bytes: flips inside whitespace JSON ignores are refused like any other
    assert whitespace > 0, "the positions include whitespace"
    (bundle / "manifest.json").write_bytes(raw)
    assert load_bundle(bundle).sealed


def test_a_flip_in_the_seal_is_refused(bundle):
    seal = bytearray((bundle / SEAL).read_bytes())
    seal[10] ^= 0x01
    (bundle / SEAL).write_bytes(bytes(seal))
    _refused(bundle, "does not match its seal")


def test_the_default_bundle_loads_with_its_hash_and_says_whether_it_is_sealed():
    from liverview.engine.bundle import UNSEALED_NOTE
    from liverview.engine.default_bundle import default_bundle_dir

    folder = default_bundle_dir()
    if not (folder / "manifest.json").exists():
        pytest.skip("no default bundle committed")
    b = load_bundle(folder)
    assert b.manifest_sha256 == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    assert b.sealed == (folder / SEAL).exists()
    assert b.notes == ([] if b.sealed else [UNSEALED_NOTE])


# --- the checks themselves -----------------------------------------------------------------


def test_the_manifest_checks_agree_with_the_networks():
    from liverview.engine import manifest, networks

    assert manifest.BACKBONES == networks.BACKBONES
    for backbone, rules in manifest.ARCH_ARGS.items():
        assert set(rules) == networks._ALLOWED_ARGS[backbone], backbone


def test_the_manifest_checks_import_no_torch():
    code = ("import sys, liverview.engine.manifest; "
            "bad = [m for m in ('torch', 'ultralytics', 'PySide6') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_edited_copy_of_a_valid_manifest_still_validates_without_torch(tiny_bundle):
    from liverview.engine.manifest import validate_manifest

    m = copy.deepcopy(_manifest(tiny_bundle))
    validate_manifest(m, tiny_bundle / "manifest.json")


def test_a_training_record_of_another_shape_is_summarised_without_a_traceback():
    from liverview.engine.bundle import training_summary

    record = {"source": "x", "train_validation": {"counts": {"HH": "many"}}, "test_cohorts": {"t": {"counts": {"HB": None}}}}
    assert training_summary(record) == "x; ? patients (HH many); tested on t (?)"


def test_a_listed_file_no_model_uses_is_refused_unread(bundle):
    m = _manifest(bundle)
    m["files"]["extra.safetensors"] = dict(m["files"]["stage1.safetensors"])
    _write(bundle, m)
    _refused(bundle, "files.extra.safetensors: no model uses it")
