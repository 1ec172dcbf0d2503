"""asr.nnet.checkpoint: self-describing model files, atomic writes, clear errors on bad files."""

from __future__ import annotations

import pytest
import torch

from asr.errors import ModelError
from asr.nnet.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from asr.nnet.models import CtcConfig, CtcModel, TdnnConfig, TdnnModel


def _models():
    torch.manual_seed(0)
    yield TdnnModel(TdnnConfig(input_dim=5, num_pdfs=4, hidden_dim=8, num_layers=2, context=(2, 1)))
    yield CtcModel(CtcConfig(input_dim=5, num_tokens=4, hidden=6, num_layers=1, conv_channels=3))


@pytest.mark.parametrize("model", list(_models()), ids=["tdnn", "ctc"])
def test_model_roundtrip_gives_identical_outputs(model, tmp_path):
    save_model(tmp_path / "m.pt", model, extra={"dev_loss": 0.5})
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config == model.config and not loaded.training
    feats, lengths = torch.randn(2, 9, 5), torch.tensor([9, 6])
    expected, _ = model.eval()(feats, lengths)
    got, _ = loaded(feats, lengths)
    assert torch.equal(got, expected)
    assert torch.load(tmp_path / "m.pt", weights_only=True)["extra"] == {"dev_loss": 0.5}


def test_checkpoint_roundtrip_and_format_checks(tmp_path):
    model = next(_models())
    state = {"epoch": 3, "best_dev_loss": 0.25, "rng": [{"torch": torch.get_rng_state()}]}
    save_checkpoint(tmp_path / "checkpoint.pt", model=model, trainer_state=state)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["trainer_state"]["epoch"] == 3
    assert torch.equal(ckpt["trainer_state"]["rng"][0]["torch"], state["rng"][0]["torch"])
    assert (
        load_model(tmp_path / "checkpoint.pt").config == model.config
    )  # a checkpoint is a model file too
    save_model(tmp_path / "model.pt", model)
    with pytest.raises(ModelError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "model.pt")


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    model = next(_models())
    path = tmp_path / "best.pt"
    save_model(path, model)
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, model)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_bad_files_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ModelError, match="not an asr.nnet"):
        load_model(tmp_path / "foreign.pt")
    model = next(_models())
    save_model(tmp_path / "m.pt", model)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["model"]["config"]["hidden_dim"] = 16
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(ModelError, match="weights do not match"):
        load_model(tmp_path / "mismatch.pt")
