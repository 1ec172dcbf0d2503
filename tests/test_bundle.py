"""asr.bundle (export/load/verify) and ``asr export``, on a monophone model trained on yesno.

Oracles: hashlib sha256 of every file recomputed here; the copied model loads and scores
exactly as the original; every kind of damage (a flipped byte, a missing file, a manifest
that disagrees with the model) is a ModelError naming the file.

The model comes from :func:`tests.support.yesno_data.build_yesno_model` (shared with
test_recognizer/test_transcribe/test_plot).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil

import numpy as np
import pytest

from asr.acoustic_model import load_acoustic_model
from asr.bundle import MANIFEST_FILE, export_bundle, load_bundle
from asr.cli.main import main
from asr.decode import DecoderConfig
from asr.errors import ModelError
from asr.features.pipeline import load_features
from tests.support.yesno_data import build_yesno_model


@pytest.fixture(scope="module")
def yesno_model(yesno_dir, tmp_path_factory):
    return build_yesno_model(yesno_dir, tmp_path_factory.mktemp("bundle"))


@pytest.fixture()
def bundle(yesno_model, tmp_path):
    return export_bundle(
        yesno_model["model"],
        graph_dir=yesno_model["graph"],
        out_dir=tmp_path / "bundle",
        decoder_config=DecoderConfig(beam=13.0, acoustic_scale=0.07),
    )


def test_manifest_lists_every_file_with_its_sha256(bundle, yesno_model):
    manifest = json.loads((bundle.root / MANIFEST_FILE).read_text())
    on_disk = {
        str(p.relative_to(bundle.root))
        for p in bundle.root.rglob("*")
        if p.is_file() and p.name != MANIFEST_FILE
    }
    assert set(manifest["files"]) == on_disk
    for rel, entry in manifest["files"].items():
        data = (bundle.root / rel).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert {"model/gmm.pt", "graph/HCLG.fst", "graph/words.txt"} <= on_disk
    assert not any(p.startswith("model/ali") or "checkpoint" in p for p in on_disk)
    assert manifest["family"] == bundle.family == "gmm"
    assert manifest["sampling_rate"] == bundle.sampling_rate == 8000
    assert manifest["feature_pipeline"]["cmvn"] == "speaker"
    assert bundle.decoder_config == DecoderConfig(beam=13.0, acoustic_scale=0.07)
    assert {"asr", "numpy", "torch"} <= set(manifest["versions"])
    # silence phones: those of the lang dir named in graph.json
    silence = {int(x) for x in (yesno_model["lang"] / "phones" / "silence.int").read_text().split()}
    assert bundle.silence_phones == silence


def test_bundle_has_normal_permissions_under_umask_022(yesno_model, tmp_path):
    """A service account must be able to read an exported bundle: drwxr-xr-x and -rw-r--r--
    (the umask's), not the 0700 of a temporary directory renamed into place."""
    import os
    import stat

    (tmp_path / "source").mkdir()
    model = tmp_path / "source" / "model"
    shutil.copytree(yesno_model["model"], model)
    for path in model.rglob("*"):  # private source files: the bundle's own modes still apply
        path.chmod(0o700 if path.is_dir() else 0o600)
    old = os.umask(0o022)
    try:
        bundle = export_bundle(model, graph_dir=yesno_model["graph"], out_dir=tmp_path / "b")
    finally:
        os.umask(old)
    modes = {
        str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
        for p in [bundle.root, *bundle.root.rglob("*")]
    }
    assert modes["b"] == 0o755
    for name, mode in modes.items():
        is_dir = (tmp_path / name).is_dir()
        assert mode == (0o755 if is_dir else 0o644), (name, oct(mode))


def test_bundled_model_scores_like_the_original(bundle, yesno_model):
    original = load_acoustic_model(yesno_model["model"])
    copied = load_acoustic_model(bundle.model_dir)
    utt_id, feats = next(
        iter(load_features(yesno_model["test"], original.feature_pipeline).items())
    )
    np.testing.assert_array_equal(original.log_likelihoods(feats), copied.log_likelihoods(feats))


def test_flipped_byte_is_reported_by_file(bundle):
    path = bundle.root / "model" / "gmm.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"gmm\.pt: sha256 differs"):
        load_bundle(bundle.root)
    load_bundle(bundle.root, verify=False)  # sizes still match: only the checksum catches it


def test_missing_or_truncated_files_and_bad_manifest(bundle, tmp_path):
    damaged = tmp_path / "b2"
    shutil.copytree(bundle.root, damaged)
    (damaged / "graph" / "HCLG.fst").unlink()
    with pytest.raises(ModelError, match=r"HCLG\.fst: listed in .* but missing"):
        load_bundle(damaged)
    shutil.rmtree(damaged)
    shutil.copytree(bundle.root, damaged)
    words = damaged / "graph" / "words.txt"
    words.write_text(words.read_text()[:-3])
    with pytest.raises(ModelError, match=r"words\.txt: size differs"):
        load_bundle(damaged, verify=False)
    for key, value, message in [
        ("sampling_rate", 16000, "sampling_rate 16000 differs"),
        ("family", "dnn", "family 'dnn' but"),
        ("version", 99, "unsupported bundle format"),
    ]:
        shutil.rmtree(damaged)
        shutil.copytree(bundle.root, damaged)
        manifest = json.loads((damaged / MANIFEST_FILE).read_text())
        manifest[key] = value
        (damaged / MANIFEST_FILE).write_text(json.dumps(manifest))
        with pytest.raises(ModelError, match=message):
            load_bundle(damaged)
    (damaged / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="manifest.json: cannot read"):
        load_bundle(damaged)
    with pytest.raises(ModelError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_export_cli_replaces_an_old_bundle_and_reads_decode_json(yesno_model, tmp_path):
    decode_dir = tmp_path / "decode"
    decode_dir.mkdir()
    (decode_dir / "decode.json").write_text(
        json.dumps({"decoder": {"beam": 11.0, "max_active": 5000, "acoustic_scale": 0.1},
                    "best_acoustic_scale": 0.083})
    )  # fmt: skip
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    argv = ["export", str(yesno_model["model"]), "--graph", str(yesno_model["graph"]),
            "--out", str(out), "--decode-dir", str(decode_dir), "--lang", str(yesno_model["lang"])]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert main(argv) == 0
    assert "gmm model, 8000 Hz" in stdout.getvalue()
    assert not (out / "stale.txt").exists()
    loaded = load_bundle(out)
    assert loaded.decoder_config.beam == 11.0 and loaded.decoder_config.acoustic_scale == 0.083
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        assert main(["export", str(tmp_path / "nope"), "--graph", str(yesno_model["graph"]),
                     "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "model directory not found" in stderr.getvalue()
