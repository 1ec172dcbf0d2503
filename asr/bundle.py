"""Model bundles: one self-contained directory with everything needed to recognize speech.

:func:`export_bundle` copies a trained model dir and its decoding graph into a
bundle and writes ``manifest.json``; :func:`load_bundle` reads it back and
verifies it (format, family, sampling rate, the sha256 of every file), raising
:class:`~asr.errors.ModelError` that names the missing, corrupt or inconsistent
file. Layout::

    BUNDLE/
      manifest.json     format/version, family, sampling_rate, feature_pipeline (incl. the
                        CMVN mode), decoder defaults, silence phones, graph type,
                        package versions, {"files": {relpath: {"sha256", "size"}}}
      model/            the model dir's top-level files (HMM/tree/transitions or token
                        table, GMM/network parameters, feature_pipeline.json, transforms)
      graph/            HCLG.fst or TLG.fst, ilabel_to_pdf.int, ilabel_to_phone.int,
                        words.txt, phones.txt, graph.json

Sub-directories of the model dir (alignments, decode dirs, the graph), training
leftovers (checkpoints, logs, histories, ``best.pt``) and plots are not copied; the
export loads the copied model to prove the bundle is complete.

>>> from asr.bundle import export_bundle, load_bundle  # doctest: +SKIP
>>> export_bundle("exp/yesno/mono", graph_dir="exp/yesno/mono/graph",
...               out_dir="exp/yesno/mono/bundle")  # doctest: +SKIP
>>> load_bundle("exp/yesno/mono/bundle").family  # doctest: +SKIP
'gmm'
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr import __version__
from asr.decode.viterbi import DecoderConfig
from asr.errors import AsrError, ModelError
from asr.features.pipeline import FeaturePipelineConfig
from asr.fileio import atomic_write_text, make_temp_dir

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST_FILE",
    "Bundle",
    "export_bundle",
    "load_bundle",
    "sha256_file",
]

MANIFEST_FILE = "manifest.json"
BUNDLE_FORMAT = "asr-model-bundle"
BUNDLE_VERSION = 1
_GRAPH_FILES = (
    "HCLG.fst",
    "TLG.fst",
    "ilabel_to_pdf.int",
    "ilabel_to_phone.int",
    "words.txt",
    "phones.txt",
    "tokens.txt",
    "graph.json",
)
# training leftovers: checkpoints, logs, histories and iteration times (their wall-clock timings
# would make two bundles of one model differ), best.pt (final.pt holds the same weights)
_SKIP_PREFIXES = (
    "checkpoint", "train_log", "train_summary", "history.", "iteration_times.", "best.", ".",
)  # fmt: skip
_SKIP_SUFFIXES = (".log", ".tmp", ".png")  # plots beside a model (alignment.png) are no part of it
_PACKAGES = ("numpy", "torch", "kaldifst", "numba", "soundfile")


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk (what :func:`load_bundle` returns).

    ``model_dir``/``graph_dir``: the bundle's ``model/`` and ``graph/``; ``graph_fst``:
    the HCLG/TLG file; ``silence_phones``: phone ids (or CTC token ids) counted as silence
    by endpointing and word-time trimming; ``manifest``: the parsed ``manifest.json``.
    """

    root: Path
    family: str
    sampling_rate: int
    feature_pipeline: FeaturePipelineConfig
    decoder_config: DecoderConfig
    silence_phones: frozenset[int]
    graph_type: str
    model_dir: Path
    graph_dir: Path
    graph_fst: Path
    manifest: Mapping[str, Any]


def sha256_file(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _package_versions() -> dict[str, str]:
    versions = {"asr": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _model_files(model_dir: Path) -> list[Path]:
    files = []
    for path in sorted(model_dir.iterdir()):
        if not path.is_file() or path.name.startswith(_SKIP_PREFIXES):
            continue
        if path.name.endswith(_SKIP_SUFFIXES):
            continue
        files.append(path)
    return files


def _silence_from_lang(lang_dir: Path) -> list[int]:
    from asr.lang import read_lang

    try:
        return sorted(int(p) for p in read_lang(lang_dir).silence_phone_ids)
    except AsrError as err:
        raise ModelError(f"{lang_dir}: cannot read the silence phones: {err}") from None


def _find_lang(graph_info: Mapping[str, Any], graph_dir: Path) -> Path | None:
    lang = graph_info.get("lang")
    if not isinstance(lang, str):
        return None
    for candidate in (Path(lang), graph_dir.parent / lang, graph_dir / lang):
        if (candidate / "phones.txt").is_file():
            return candidate
    return None


def export_bundle(
    model_dir: str | os.PathLike,
    *,
    graph_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    lang_dir: str | os.PathLike | None = None,
    silence_phones: Sequence[int] | None = None,
    decoder_config: DecoderConfig | None = None,
) -> Bundle:
    """Copy ``model_dir`` + ``graph_dir`` into ``out_dir`` with a manifest; return it loaded.

    Silence phones come from ``silence_phones``, else ``lang_dir`` (its
    ``phones/silence.*``), else the lang dir named in ``GRAPH_DIR/graph.json``; for
    CTC models the blank token (0) is the silence. ``decoder_config``: decoding
    defaults stored in the manifest (default ``DecoderConfig(beam=13.0)``, as
    ``asr decode``). The bundle is built in a temporary directory beside
    ``out_dir`` and renamed into place, replacing an older bundle.
    """
    from asr.acoustic_model import detect_family, load_acoustic_model
    from asr.decode.search_graph import resolve_graph_dir

    model_dir, graph_dir, out_dir = Path(model_dir), Path(graph_dir), Path(out_dir)
    family = detect_family(model_dir)
    try:
        fst_path, _, words_path = resolve_graph_dir(graph_dir)
    except AsrError as err:
        raise ModelError(str(err)) from None
    if words_path is None:
        raise ModelError(f"{graph_dir}: no words.txt in the graph directory")
    model = load_acoustic_model(model_dir)
    pipeline = model.feature_pipeline
    if pipeline.base is None or "sampling_rate" not in pipeline.base:
        raise ModelError(
            f"{model_dir}: the feature pipeline has no front-end config (base); "
            "a bundle must be able to compute features from audio"
        )
    graph_info: dict[str, Any] = {}
    if (graph_dir / "graph.json").is_file():
        try:
            graph_info = json.loads((graph_dir / "graph.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ModelError(f"{graph_dir / 'graph.json'}: {err}") from None
    if "num_pdfs" in graph_info and int(graph_info["num_pdfs"]) != model.num_pdfs:
        raise ModelError(
            f"{graph_dir}: the graph was built for {graph_info['num_pdfs']} pdfs but the model "
            f"{model_dir} has {model.num_pdfs}"
        )
    if silence_phones is None:
        if family == "ctc":
            silence_phones = [0]
        else:
            lang = Path(lang_dir) if lang_dir is not None else _find_lang(graph_info, graph_dir)
            if lang is None:
                raise ModelError(
                    f"{graph_dir}/graph.json names no readable lang dir; pass the lang dir "
                    "(asr export ... --lang LANG_DIR) to know the silence phones"
                )
            silence_phones = _silence_from_lang(lang)
    decoder_config = decoder_config if decoder_config is not None else DecoderConfig(beam=13.0)

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(out_dir.parent, prefix=f".{out_dir.name}.")  # mode from the umask
    except OSError as err:  # a read-only or full parent directory
        raise OSError(err.errno, err.strerror, str(out_dir)) from None
    try:
        (tmp / "model").mkdir()
        (tmp / "graph").mkdir()
        for path in _model_files(model_dir):
            shutil.copyfile(path, tmp / "model" / path.name)  # new files: umask permissions
        for name in _GRAPH_FILES:
            if (graph_dir / name).is_file():
                shutil.copyfile(graph_dir / name, tmp / "graph" / name)
        files = {
            str(p.relative_to(tmp)): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "family": family,
            "sampling_rate": int(pipeline.base["sampling_rate"]),
            "num_pdfs": int(model.num_pdfs),
            "feature_pipeline": pipeline.to_dict(),
            "decoder": dataclasses.asdict(decoder_config),
            "silence_phones": sorted(int(p) for p in silence_phones),
            "graph": {"type": graph_info.get("type", fst_path.stem.lower()), "fst": fst_path.name},
            "source": {"model_dir": str(model_dir), "graph_dir": str(graph_dir)},
            "versions": _package_versions(),
            "files": files,
        }
        atomic_write_text(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        load_bundle(tmp)  # proves the copy is complete and loadable
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, old / "bundle")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, out_dir)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.filename is None or any(
            str(name).startswith(str(tmp)) for name in (err.filename, err.filename2)
        ):
            # disk full or read-only while writing the copy: name the bundle, not the temporary
            raise OSError(err.errno, err.strerror, str(out_dir)) from err
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_bundle(out_dir)


def _require(manifest: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelError(f"{path}: '{key}' is missing or not a {kind.__name__}")
    return value


def load_bundle(bundle_dir: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Read and check a bundle; ``verify=False`` skips the sha256 of each file (sizes are
    still checked). :class:`ModelError` names the bad file."""
    from asr.acoustic_model import detect_family

    root = Path(bundle_dir)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise ModelError(f"{root}: bundle directory not found")
    if not path.is_file():
        raise ModelError(f"{path}: not found; is {root} a model bundle (asr export ...)?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: cannot read the manifest: {err}") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{path}: expected a JSON object")
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version") != BUNDLE_VERSION:
        raise ModelError(
            f"{path}: unsupported bundle format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r} (expected {BUNDLE_FORMAT!r} {BUNDLE_VERSION})"
        )
    files = _require(manifest, "files", dict, path)
    for rel, entry in files.items():
        file_path = root / rel
        if not file_path.is_file():
            raise ModelError(f"{file_path}: listed in {path} but missing from the bundle")
        if not isinstance(entry, dict) or file_path.stat().st_size != entry.get("size"):
            raise ModelError(f"{file_path}: size differs from the manifest (corrupt or modified)")
        if verify and sha256_file(file_path) != entry.get("sha256"):
            raise ModelError(f"{file_path}: sha256 differs from the manifest (corrupt or modified)")
    family = _require(manifest, "family", str, path)
    model_dir, graph_dir = root / "model", root / "graph"
    if detect_family(model_dir) != family:
        raise ModelError(
            f"{path}: family {family!r} but {model_dir} holds a {detect_family(model_dir)!r} model"
        )
    try:
        pipeline = FeaturePipelineConfig.from_dict(
            _require(manifest, "feature_pipeline", dict, path)
        )
        decoder = DecoderConfig(**_require(manifest, "decoder", dict, path))
    except (AsrError, TypeError) as err:
        raise ModelError(f"{path}: {err}") from None
    if pipeline != FeaturePipelineConfig.load(model_dir):
        raise ModelError(f"{path}: feature_pipeline differs from {model_dir}/feature_pipeline.json")
    rate = _require(manifest, "sampling_rate", int, path)
    if (pipeline.base or {}).get("sampling_rate") != rate:
        raise ModelError(
            f"{path}: sampling_rate {rate} differs from the feature config's "
            f"{(pipeline.base or {}).get('sampling_rate')}"
        )
    graph = _require(manifest, "graph", dict, path)
    fst = graph_dir / str(graph.get("fst", ""))
    if not fst.is_file() or fst.parent != graph_dir:
        raise ModelError(f"{fst}: the bundle's graph FST is missing")
    silence = _require(manifest, "silence_phones", list, path)
    return Bundle(
        root=root,
        family=family,
        sampling_rate=rate,
        feature_pipeline=pipeline,
        decoder_config=decoder,
        silence_phones=frozenset(int(p) for p in silence),
        graph_type=str(graph.get("type", "")),
        model_dir=model_dir,
        graph_dir=graph_dir,
        graph_fst=fst,
        manifest=manifest,
    )
