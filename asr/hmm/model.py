"""An HMM model directory: topology + context-dependency tree + transition model.

:class:`HmmModel` bundles what every HMM-based acoustic model (GMM or DNN)
shares. ``save(model_dir)`` writes, atomically:

* ``MODEL_DIR/hmm.json`` — summary and format version (``{"format": "asr-hmm", "version": 1,
  "num_pdfs", "num_transition_ids", "num_transition_states", "context_width",
  "central_position"}``), written last, so its presence means a complete model;
* ``MODEL_DIR/topo`` — the topology in Kaldi's text format;
* ``MODEL_DIR/tree.json`` — the context-dependency tree (:mod:`asr.hmm.tree`);
* ``MODEL_DIR/transitions.npz`` — transition-state tuples, transition log-probs, num_pdfs;
* ``MODEL_DIR/phones.txt`` — the phone symbol table the model was built for.

Later stages add their parameters (e.g. ``gmm.npz``, ``dnn.pt``) beside these files.

>>> import tempfile
>>> from asr.lang.symbols import SymbolTable
>>> from asr.lang.topology import make_default_topology
>>> phones = SymbolTable.from_symbols(["<eps>", "SIL", "Y", "N", "#0"])
>>> topo = make_default_topology(nonsil_phone_ids=[2, 3], sil_phone_ids=[1])
>>> model = init_monophone_from(phones=phones, topology=topo)
>>> model.num_pdfs, model.transition_model.num_transition_ids
(11, 30)
>>> d = tempfile.mkdtemp(); model.save(d); HmmModel.load(d).num_pdfs
11
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asr.errors import AsrError, ModelError
from asr.fileio import atomic_write, atomic_write_text
from asr.hmm.transition_model import TransitionModel
from asr.hmm.tree import ContextDependency
from asr.lang.symbols import SymbolTable, read_symbol_table
from asr.lang.topology import Topology, read_topology

if TYPE_CHECKING:  # pragma: no cover - typing only
    from asr.lang import Lang

FORMAT_NAME = "asr-hmm"
FORMAT_VERSION = 1
SUMMARY_FILE = "hmm.json"
TOPO_FILE = "topo"
TREE_FILE = "tree.json"
TRANSITIONS_FILE = "transitions.npz"
PHONES_FILE = "phones.txt"


@dataclass(frozen=True, eq=False)
class HmmModel:
    """Topology, tree and transition model, plus the phone table they index."""

    topology: Topology
    ctx_dep: ContextDependency
    transition_model: TransitionModel
    phones: SymbolTable

    def __post_init__(self) -> None:
        if self.transition_model.num_pdfs != self.ctx_dep.num_pdfs:
            raise ModelError(
                f"transition model has {self.transition_model.num_pdfs} pdfs, "
                f"tree has {self.ctx_dep.num_pdfs}"
            )
        missing = [p for p in self.transition_model.phones if not self.phones.has_id(p)]
        if missing:
            raise ModelError(f"model phones {missing[:10]} are not in the phone table")

    @property
    def num_pdfs(self) -> int:
        return self.ctx_dep.num_pdfs

    def check_phones(self, phones: SymbolTable, *, what: str = "lang") -> None:
        """Raise :class:`ModelError` unless ``phones`` equals the model's phone table."""
        if dict(phones.pairs) != dict(self.phones.pairs):
            ours, theirs = set(self.phones.pairs), set(phones.pairs)
            diff = sorted(ours ^ theirs, key=lambda p: p[1])[:5]
            raise ModelError(
                f"{what} phones.txt differs from the model's (e.g. {diff}); "
                "build the model from this lang dir"
            )

    def save(self, model_dir: str | os.PathLike) -> None:
        """Write the files named in the module docstring into ``model_dir``."""
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        self.topology.write(model_dir / TOPO_FILE)
        atomic_write_text(model_dir / TREE_FILE, self.ctx_dep.to_json() + "\n")
        with atomic_write(model_dir / TRANSITIONS_FILE, "wb") as handle:
            handle.write(self.transition_model.to_npz_bytes())
        self.phones.write(model_dir / PHONES_FILE)
        summary = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "num_pdfs": self.num_pdfs,
            "num_transition_ids": self.transition_model.num_transition_ids,
            "num_transition_states": self.transition_model.num_transition_states,
            "context_width": self.ctx_dep.context_width,
            "central_position": self.ctx_dep.central_position,
        }
        atomic_write_text(model_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")

    @classmethod
    def load(cls, model_dir: str | os.PathLike) -> HmmModel:
        """Read a model directory written by :meth:`save`."""
        model_dir = Path(model_dir)
        summary_path = model_dir / SUMMARY_FILE
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{summary_path}: not found; is {model_dir} a model dir?") from None
        except json.JSONDecodeError as err:
            raise ModelError(f"{summary_path}: invalid JSON: {err}") from None
        if summary.get("format") != FORMAT_NAME or summary.get("version") != FORMAT_VERSION:
            raise ModelError(f"{summary_path}: unsupported model format {summary.get('format')!r}")
        try:
            topology = read_topology(model_dir / TOPO_FILE)
            phones = read_symbol_table(model_dir / PHONES_FILE)
        except AsrError as err:
            raise ModelError(f"{model_dir}: {err}") from None
        tree_path = model_dir / TREE_FILE
        try:
            ctx_dep = ContextDependency.from_json(tree_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{tree_path}: not found") from None
        except ModelError as err:
            raise ModelError(f"{tree_path}: {err}") from None
        transitions_path = model_dir / TRANSITIONS_FILE
        if not transitions_path.exists():
            raise ModelError(f"{transitions_path}: not found")
        transition_model = TransitionModel.from_npz(transitions_path, topology=topology)
        model = cls(
            topology=topology, ctx_dep=ctx_dep, transition_model=transition_model, phones=phones
        )
        if model.num_pdfs != summary.get("num_pdfs") or (
            transition_model.num_transition_ids != summary.get("num_transition_ids")
        ):
            raise ModelError(f"{summary_path}: sizes disagree with the model files")
        return model


def init_monophone_from(
    *,
    phones: SymbolTable,
    topology: Topology,
    shared_phones: Sequence[Sequence[int]] | None = None,
) -> HmmModel:
    """Monophone model over every phone of ``topology`` (one pdf per phone and pdf-class,
    or per set in ``shared_phones``), transition probabilities from the topology."""
    model_phones = topology.phones
    unknown = [p for p in model_phones if not phones.has_id(p)]
    if unknown:
        raise ModelError(f"topology phones {unknown[:10]} are not in the phone table")
    ctx_dep = ContextDependency.monophone(
        phones=model_phones,
        num_pdf_classes={p: topology.num_pdf_classes(p) for p in model_phones},
        shared_phones=shared_phones,
    )
    transition_model = TransitionModel.build(topology=topology, ctx_dep=ctx_dep)
    return HmmModel(
        topology=topology, ctx_dep=ctx_dep, transition_model=transition_model, phones=phones
    )


def init_monophone(lang: Lang, *, shared_phones: Sequence[Sequence[int]] | None = None) -> HmmModel:
    """Kaldi's ``gmm-init-mono`` structure (without Gaussians) for a lang dir read with
    :func:`asr.lang.read_lang`."""
    return init_monophone_from(
        phones=lang.phones, topology=lang.topology, shared_phones=shared_phones
    )
