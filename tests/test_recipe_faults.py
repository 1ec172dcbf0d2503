"""Recipe faults on yesno: kill -9 and resume, disk full, read-only outputs, corrupt bundles,
and two runs of one pipeline agreeing.

Oracles: an uninterrupted run of the same command (its files, byte for byte; the train logs
after dropping wall-clock seconds and the resume marker; scp files after mapping the output
dir), hashlib's sha256 of the bundle files, and the kernel's own errors (RLIMIT_FSIZE makes
write() fail with EFBIG; a directory with mode 0555 refuses new files). Root ignores mode
bits, so as root (as here, and maybe on CI) the read-only case raises the kernel's
PermissionError from a patched ``tempfile.mkstemp``/``mkdtemp`` instead; the file-system
side (nothing half-written left behind) is the same code path.
``benchmarks/recipe_faults.py`` runs the kill -9 test on every recipe stage.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.bundle import export_bundle, load_bundle, sha256_file
from asr.cli.main import main
from asr.errors import ModelError

REPO = Path(__file__).resolve().parent.parent
TIMINGS = {"seconds", "resumed_from", "resumed_from_epoch", "train_seconds",
           "mean_frames_per_second", "frames_per_second", "wall_seconds", "rtf",
           "likelihood_seconds", "search_seconds",
           # asr.timing's iteration_times.json / stage_times.json
           "cpu_seconds", "user_seconds", "sys_seconds", "peak_rss_mib", "finished_at",
           "models_trained"}  # fmt: skip
MONO_ARGS = ["--num-iters", "8", "--totgauss", "60", "--max-iter-inc", "6"]
CTC_ARGS = ["--epochs", "2", "--hidden", "16", "--num-layers", "1", "--conv-channels", "16",
            "--batch-size", "6", "--lr-schedule", "constant", "--patience", "0", "--dropout", "0",
            "--threads", "1"]  # fmt: skip


def asr_command(*argv) -> list[str]:
    return [sys.executable, "-m", "asr.cli.main", *map(str, argv)]


def run_cli(argv: list) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main([str(a) for a in argv]) == 0, argv
    return out.getvalue()


@pytest.fixture(scope="module")
def yesno(yesno_dir, tmp_path_factory):
    """yesno data dirs with MFCCs, the recipe's lang dir, a unigram G, a 6-iteration monophone
    GMM and its HCLG (for the export cases)."""
    from asr.data import prepare_yesno
    from asr.features import MfccConfig
    from asr.features.batch import compute_data_dir_features
    from asr.gmm.train_mono import MonoConfig, train_mono

    root = tmp_path_factory.mktemp("recipe_faults")
    data = root / "data"
    prepare_yesno(yesno_dir, data)
    for name in ("train", "test"):
        compute_data_dir_features(
            data / name, data / name / "data", config=MfccConfig(sampling_rate=8000)
        )
    lang = data / "lang"
    run_cli(["lang", "prepare", "--dict", REPO / "recipes/yesno/local/lexicon.txt", "--out", lang])
    run_cli(["lm", "train", data / "train/text", "--order", "1", "--vocab", lang / "words.txt",
             "--out", lang / "lm.arpa"])  # fmt: skip
    run_cli(
        ["lm", "to-g", lang / "lm.arpa", "--words", lang / "words.txt", "--out", lang / "G.fst"]
    )
    small = data / "train10"  # the first 10 training utterances, for the kill -9 runs
    small.mkdir()
    for name in ("wav.scp", "text", "utt2spk", "feats.scp"):
        lines = (data / "train" / name).read_text().splitlines(keepends=True)
        (small / name).write_text("".join(lines[:10]))
    shutil.copy(data / "train" / "cmvn.scp", small / "cmvn.scp")  # one speaker: "global"
    utts = [line.split()[0] for line in (small / "text").read_text().splitlines()]
    (small / "spk2utt").write_text(f"global {' '.join(utts)}\n")
    mono = root / "mono"
    train_mono(
        data / "train", lang, mono, config=MonoConfig(num_iters=6, totgauss=60, max_iter_inc=4)
    )
    run_cli(["graph", "mkgraph", lang, mono, mono / "graph"])
    return {"root": root, "data": data, "small": small, "lang": lang, "mono": mono}


# ------------------------------------------------------------------------------ helpers
def kill_when(argv: list[str], ready, *, poll_s: float = 0.005) -> bool:
    """Run ``argv`` in its own process group; SIGKILL the group as soon as ``ready()``.
    False when the command finished first."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    while proc.poll() is None:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(poll_s)
    return False


def files_under(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def assert_same_outputs(ref: Path, got: Path) -> None:
    """Every file of ``ref`` exists in ``got`` with equal bytes, or equal after mapping the two
    roots (scp files hold absolute ark paths, logs name their inputs); JSON logs and torch
    checkpoints also after dropping wall-clock timings and resume markers."""
    ref_files, got_files = files_under(ref), files_under(got)
    hidden = [rel for rel in got_files if any(p.startswith(".") for p in Path(rel).parts)]
    assert all(rel.endswith(".tmp") for rel in hidden), hidden  # only atomic-write leftovers
    assert set(ref_files) == set(got_files) - set(hidden)
    for rel, path in ref_files.items():
        a, b = path.read_bytes(), got_files[rel].read_bytes()
        if a == b:
            continue
        if rel.endswith(".pt"):  # checkpoints: their history has frames/s
            x, y = (torch.load(p, weights_only=True) for p in (path, got_files[rel]))
            if "trainer_state" in x:
                history = [_strip(d["trainer_state"]["history"]) for d in (x, y)]
                assert history[0] == history[1], rel
            assert x["state_dict"].keys() == y["state_dict"].keys(), rel
            different = [
                k
                for k in x["state_dict"]
                if not torch.equal(x["state_dict"][k], y["state_dict"][k])
            ]
            assert not different, (rel, different)
            continue
        ta, tb = a.decode().replace(str(ref), "<ROOT>"), b.decode().replace(str(got), "<ROOT>")
        if rel.endswith(".json"):
            assert _strip(json.loads(ta)) == _strip(json.loads(tb)), rel
        else:
            assert ta == tb, rel


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------------------ kill -9
def test_kill_9_of_train_mono_then_rerun_gives_the_uninterrupted_model(yesno, tmp_path):
    train, lang = yesno["small"], yesno["lang"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    run_cli(["train", "mono", train, lang, full, *MONO_ARGS])  # in-process: no start-up cost
    assert not (full / "checkpoint.npz").exists()
    seen_inodes: set[int] = set()

    def after_two_checkpoints() -> bool:
        with contextlib.suppress(FileNotFoundError):
            seen_inodes.add((killed / "checkpoint.npz").stat().st_ino)
        return len(seen_inodes) >= 2

    argv = asr_command("train", "mono", train, lang, killed, *MONO_ARGS)
    assert kill_when(argv, after_two_checkpoints), "training finished before the kill"
    # killed mid-training: no final file yet, the checkpoint is whole
    assert not (killed / "gmm.pt").exists() and not (killed / "train_log.json").exists()
    with np.load(killed / "checkpoint.npz") as ckpt:
        next_iter = json.loads(str(ckpt["meta"]))["next_iter"]
    assert 2 <= next_iter < 8
    rerun = subprocess.run(argv, check=True, capture_output=True, text=True)
    assert f"resumed at iteration {next_iter}" in rerun.stdout  # not skipped, not restarted
    assert_same_outputs(full, killed)
    assert json.loads((killed / "train_log.json").read_text())["resumed_from"] == next_iter


def test_kill_9_of_ctc_training_mid_epoch_resumes_from_its_checkpoint(yesno, tmp_path):
    """A real SIGKILL of ``asr train ctc`` (test_nnet_trainer covers an in-process abort)."""
    train, lang = yesno["small"], yesno["lang"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    threads = torch.get_num_threads()
    try:
        run_cli(["train", "ctc", train, train, lang, full, *CTC_ARGS])  # in-process
    finally:
        torch.set_num_threads(threads)  # --threads 1 must not slow the other tests down
    argv = asr_command("train", "ctc", train, train, lang, killed, *CTC_ARGS)
    assert kill_when(argv, (killed / "checkpoint.pt").exists), "training finished first"
    assert not (killed / "final.pt").exists() and not (killed / "train_summary.json").exists()
    subprocess.run(argv, check=True, capture_output=True)
    summary = json.loads((killed / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] >= 1
    assert_same_outputs(full, killed)


# ------------------------------------------------------------------------------ disk full, read-only
def _fresh_data_dir(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        shutil.copy(src / name, dst / name)
    return dst


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_features_compute_disk_full_is_one_clear_line(yesno, tmp_path, monkeypatch, capsys):
    data_dir = _fresh_data_dir(yesno["data"] / "train", tmp_path / "train")
    out = tmp_path / "feats"
    monkeypatch.setattr(os, "fsync", _no_space)  # every atomic write fails at its flush
    assert main(["features", "compute", str(data_dir), "--out", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("asr features: error: ") and "No space left on device" in line
    assert str(out) in line
    assert list(out.iterdir()) == []  # no output, half-written or whole, and no temporary
    assert not (data_dir / "feats.scp").exists()


def _limit_file_size(max_bytes: int):
    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return setup


def test_disk_full_from_the_kernel_features_and_export(yesno, tmp_path):
    """RLIMIT_FSIZE: the kernel refuses writes past 20 kB (the train features are ~0.8 MB,
    the monophone's gmm.pt ~40 kB)."""
    data_dir = _fresh_data_dir(yesno["data"] / "train", tmp_path / "train")
    out = tmp_path / "feats"
    proc = subprocess.run(
        asr_command("features", "compute", data_dir, "--out", out), capture_output=True,
        text=True, preexec_fn=_limit_file_size(20_000),
    )  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert line == f"asr features: error: {out / 'raw_mfcc.1.ark'}: File too large"
    assert not list(out.iterdir()) and not (data_dir / "feats.scp").exists()

    mono = yesno["mono"]
    bundle = tmp_path / "bundle"
    assert max(p.stat().st_size for p in mono.iterdir() if p.is_file()) > 20_000
    proc = subprocess.run(
        asr_command("export", mono, "--graph", mono / "graph", "--out", bundle),
        capture_output=True, text=True, preexec_fn=_limit_file_size(20_000),
    )  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert line == f"asr export: error: {bundle}: File too large"
    assert list(tmp_path.glob("*bundle*")) == []  # neither the bundle nor its temporary


@contextlib.contextmanager
def read_only(directory: Path, monkeypatch):
    """Make ``directory`` refuse new files: mode 0555, or as root (which ignores it) the same
    PermissionError from tempfile's mkstemp/mkdtemp for paths inside it."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    inside = str(directory.resolve())

    def refuse(original):
        def wrapped(*args, dir=None, prefix=None, **kwargs):  # noqa: A002 - tempfile's name
            if dir is not None and str(Path(dir).resolve()).startswith(inside):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                                      os.path.join(dir, f"{prefix}XXXXXX"))  # fmt: skip
            return original(*args, dir=dir, prefix=prefix, **kwargs)

        return wrapped

    monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp))
    monkeypatch.setattr(tempfile, "mkdtemp", refuse(tempfile.mkdtemp))
    yield


def test_read_only_outputs_features_and_export(yesno, tmp_path, monkeypatch, capsys):
    data_dir = _fresh_data_dir(yesno["data"] / "train", tmp_path / "train")
    locked = tmp_path / "locked"
    with read_only(locked, monkeypatch):
        assert main(["features", "compute", str(data_dir), "--out", str(locked)]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert line == f"asr features: error: {locked / 'raw_mfcc.1.scp'}: Permission denied"
        mono = yesno["mono"]
        argv = ["export", str(mono), "--graph", str(mono / "graph"), "--out", str(locked / "b")]
        assert main(argv) == 1
        line = one_error_line(capsys.readouterr().err)
        assert line == f"asr export: error: {locked / 'b'}: Permission denied"
    assert list(locked.iterdir()) == []
    # an output dir below a regular file: the kernel's own error, root or not
    (tmp_path / "file").write_text("x")
    assert main(["features", "compute", str(data_dir), "--out", str(tmp_path / "file/x")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "file") in line and "Not a directory" in line


# ------------------------------------------------------------------------------ corrupt bundles
@pytest.mark.parametrize(
    "rel", ["model/gmm.pt", "graph/HCLG.fst", "graph/words.txt", "model/feature_pipeline.json"]
)
def test_a_flipped_byte_in_any_bundle_file_is_caught_before_decoding(yesno, tmp_path, rel):
    from asr.recognizer import Recognizer

    mono = yesno["mono"]
    bundle = export_bundle(mono, graph_dir=mono / "graph", out_dir=tmp_path / "bundle").root
    path = bundle / rel
    expected = json.loads((bundle / "manifest.json").read_text())["files"][rel]["sha256"]
    assert sha256_file(path) == expected
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"{path}: sha256 differs"):
        load_bundle(bundle)
    with pytest.raises(ModelError, match="sha256 differs"):
        Recognizer.from_dir(bundle)
    wav = (yesno["data"] / "test" / "wav.scp").read_text().splitlines()[0].split(maxsplit=1)[1]
    with (
        contextlib.redirect_stdout(io.StringIO()) as out,
        contextlib.redirect_stderr(io.StringIO()) as err,
    ):
        assert main(["transcribe", "--model", str(bundle), wav]) == 2
    assert out.getvalue() == ""  # nothing decoded
    assert "sha256 differs" in one_error_line(err.getvalue())


# ------------------------------------------------------------------------------ determinism
def _pipeline(yesno_dir: Path, root: Path) -> None:
    """Features -> monophone GMM -> HCLG -> decode -> a 1-epoch DNN on its alignments."""
    from asr.data import prepare_yesno
    from asr.features import MfccConfig
    from asr.features.batch import compute_data_dir_features
    from asr.gmm.train_mono import MonoConfig, train_mono
    from asr.nnet.train_steps import DnnRecipeConfig, train_dnn
    from asr.nnet.trainer import TrainConfig

    data = root / "data"
    prepare_yesno(yesno_dir, data)
    for name in ("train", "test"):
        compute_data_dir_features(
            data / name, data / name / "data", config=MfccConfig(sampling_rate=8000)
        )
    lang = REPO / "recipes/yesno/local/lexicon.txt"
    run_cli(["lang", "prepare", "--dict", lang, "--out", root / "lang"])
    run_cli(["lm", "train", data / "train/text", "--order", "1", "--vocab", root / "lang/words.txt",
             "--out", root / "lang/lm.arpa"])  # fmt: skip
    run_cli(["lm", "to-g", root / "lang/lm.arpa", "--words", root / "lang/words.txt", "--out",
             root / "lang/G.fst"])  # fmt: skip
    mono = root / "mono"
    train_mono(data / "train", root / "lang", mono, config=MonoConfig(num_iters=5, totgauss=60))
    run_cli(["graph", "mkgraph", root / "lang", mono, mono / "graph"])
    run_cli(["decode", mono, data / "test", "--graph", mono / "graph"])
    config = DnnRecipeConfig(hidden_dim=32, num_layers=2, context=(2, 2),
                             train=TrainConfig(epochs=1, lr=1e-3, batch_size=8))  # fmt: skip
    train_dnn(data / "train", data / "train", root / "lang", mono / "ali", root / "dnn",
              config=config, progress=False)  # fmt: skip


def test_two_runs_of_a_short_pipeline_give_identical_outputs(yesno_dir, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _pipeline(yesno_dir, first)
    torch.rand(7)  # the global RNG is elsewhere for the second run: training must reseed
    _pipeline(yesno_dir, second)
    assert_same_outputs(first, second)
    assert (first / "dnn" / "final.pt").read_bytes() == (second / "dnn" / "final.pt").read_bytes()


# ------------------------------------------------------------------------------ reruns
def _stages_2_to_6(data: Path, lexicon: Path, root: Path, *, order: int = 1, totgauss: int = 40):
    """recipes/yesno/run.sh stages 2-6 up to decoding (the same commands, tiny training);
    returns what `asr train mono` printed."""
    lang, mono0, mono = root / "lang", root / "mono0", root / "mono"
    run_cli(["lang", "prepare", "--dict", lexicon, "--out", lang])
    run_cli(["lm", "train", data / "train/text", "--order", order, "--vocab", lang / "words.txt",
             "--out", lang / "lm.arpa"])  # fmt: skip
    run_cli(["lm", "to-g", lang / "lm.arpa", "--words", lang / "words.txt", "--out",
             lang / "G.fst"])  # fmt: skip
    run_cli(["hmm", "init-mono", lang, "--out", mono0])
    run_cli(["graph", "mkgraph", lang, mono0, mono0 / "graph", "--skip-if-up-to-date"])
    out = run_cli(["train", "mono", data / "train", lang, mono, "--num-iters", "3",
                   "--max-iter-inc", "2", "--totgauss", totgauss])  # fmt: skip
    run_cli(["graph", "mkgraph", lang, mono, mono / "graph", "--skip-if-up-to-date"])
    return out


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {rel: (p.stat().st_mtime_ns, p.read_bytes()) for rel, p in files_under(root).items()}


def _changed(before: dict, after: dict) -> set[str]:
    return {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}


def test_rerunning_finished_stages_rewrites_nothing_and_changes_rerun_their_steps(yesno, tmp_path):
    """Issue 20: a rerun of the recipe used to rewrite the lang dir, lm.arpa, G.fst and the
    mono0 model and graph, and so retrain the monophone model. Now every file keeps its bytes
    and mtime; a changed input or option still reruns the steps that depend on it."""
    lexicon, root = tmp_path / "lexicon.txt", tmp_path / "exp"
    shutil.copy(REPO / "recipes/yesno/local/lexicon.txt", lexicon)
    assert "skipping" not in _stages_2_to_6(yesno["data"], lexicon, root)
    first = _snapshot(root)
    assert {"lang/lm.arpa", "lang/G.fst", "mono/gmm.pt", "mono/graph/HCLG.fst"} <= set(first)
    assert f"skipping {root / 'mono'} (up to date" in _stages_2_to_6(yesno["data"], lexicon, root)
    assert _changed(first, _snapshot(root)) == set()

    lexicon.write_text(lexicon.read_text())  # a new mtime, the same words
    assert f"skipping {root / 'mono'} (up to date" in _stages_2_to_6(yesno["data"], lexicon, root)
    assert _changed(first, _snapshot(root)) == set()

    # a lang file touched (same bytes, newer than the model): retrain once, then skip again
    os.utime(root / "lang" / "topo")
    assert "skipping" not in _stages_2_to_6(yesno["data"], lexicon, root)
    retrained = _snapshot(root)
    assert "mono/train_log.json" in _changed(first, retrained)
    assert f"skipping {root / 'mono'} (up to date" in _stages_2_to_6(yesno["data"], lexicon, root)
    assert _changed(retrained, _snapshot(root)) == set()
    first = retrained

    lexicon.write_text(lexicon.read_text() + "NO Y N\n")  # a second pronunciation of NO
    _stages_2_to_6(yesno["data"], lexicon, root)
    second = _snapshot(root)
    changed = _changed(first, second)
    assert {"lang/lexicon.txt", "lang/L.fst", "mono/train_log.json", "mono/graph/HCLG.fst",
            "mono0/graph/HCLG.fst"} <= changed  # fmt: skip
    assert not changed & {"lang/lm.arpa", "lang/G.fst", "lang/words.txt"}  # same vocabulary

    _stages_2_to_6(yesno["data"], lexicon, root, order=2)  # another LM: G and HCLG, no training
    third = _snapshot(root)
    changed = _changed(second, third)
    assert {"lang/lm.arpa", "lang/G.fst", "mono/graph/HCLG.fst", "mono0/graph/HCLG.fst"} <= changed
    assert not changed & {"mono/gmm.pt", "mono/train_log.json", "lang/L.fst"}

    out = _stages_2_to_6(yesno["data"], lexicon, root, order=2, totgauss=50)  # option: retrain
    assert "skipping" not in out
    assert "mono/train_log.json" in _changed(third, _snapshot(root))
