"""HCLG: the decoding graph of an HMM acoustic model (Kaldi's ``utils/mkgraph.sh``).

Steps, in mkgraph.sh's order so nothing non-functional is ever determinized:

1. ``LG = minimize_encoded(determinize_star(L_disambig o G))`` (log semiring);
2. ``CLG, ilabel_info = compose_context(LG)`` (:mod:`asr.graph.context`);
3. ``Ha`` from ``ilabel_info`` + tree + transition model (:func:`make_h_transducer`);
   ``HCLGa = minimize_encoded(rm_disambig(determinize_star(Ha o CLG)))`` — the disambiguation
   transition-ids become epsilons (eps:eps arcs stay, as after Kaldi's ``fstrmepslocal``);
4. ``HCLG = add_self_loops(HCLGa)`` (Kaldi's ``--reorder=true`` scheme).

Output directory (:func:`mkgraph`):

* ``HCLG.fst`` — binary OpenFst vector FST; input = transition-ids, output = word ids;
* ``words.txt``, ``phones.txt`` — copies from the lang dir;
* ``ilabel_to_pdf.int`` / ``ilabel_to_phone.int`` — line ``i`` = pdf id / phone id of input label
  (transition-id) ``i``; line 0 is ``-1`` (epsilon);
* ``graph.json`` — ``{"type": "hclg", "num_pdfs", "num_ilabels", "self_loop_scale",
  "transition_scale", "lang", "model", "num_states", "num_arcs"}``.

>>> import tempfile
>>> from asr.lang import Lexicon, prepare_lang
>>> from asr.hmm import init_monophone
>>> import kaldifst
>>> d = tempfile.mkdtemp()
>>> lang = prepare_lang(Lexicon.from_pairs([("YES", "Y"), ("NO", "N")]), d + "/lang")
>>> init_monophone(lang).save(d + "/mono")
>>> g = kaldifst.compile("0 0 2 2 0.69\\n0 0 3 3 0.69\\n0 0.69\\n")   # NO / YES loop
>>> g.write(d + "/lang/G.fst")
True
>>> info = mkgraph(d + "/lang", d + "/mono", d + "/lang/G.fst", d + "/graph")
>>> info.graph_type, info.num_pdfs
('hclg', 16)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import kaldifst
import numpy as np

from asr.errors import AsrError, GraphError, ModelError
from asr.fileio import atomic_write_text, is_up_to_date, touch
from asr.graph.context import compose_context
from asr.graph.hmm_fst import FstArrays, add_self_loops, make_h_transducer
from asr.hmm.model import (
    PHONES_FILE,
    SUMMARY_FILE,
    TRANSITIONS_FILE,
    TREE_FILE,
    HmmModel,
)
from asr.lang import Lang, read_lang

GRAPH_INFO_FILE = "graph.json"


@dataclass(frozen=True)
class MkGraphConfig:
    """Scales and determinization settings (Kaldi's mkgraph.sh defaults)."""

    self_loop_scale: float = 0.1
    transition_scale: float = 1.0
    delta: float = 1.0 / 1024.0  # determinization/minimization weight-equality delta
    max_states: int = -1  # abort determinization beyond this many states (-1: no limit)

    def __post_init__(self) -> None:
        if self.self_loop_scale < 0 or self.transition_scale < 0:
            raise GraphError("self_loop_scale and transition_scale must be >= 0")


@dataclass(frozen=True)
class GraphInfo:
    """What ``graph.json`` records about a built graph (HCLG or TLG)."""

    graph_type: str
    num_pdfs: int
    num_ilabels: int
    num_states: int
    num_arcs: int
    lang: str
    model: str | None = None
    self_loop_scale: float | None = None
    transition_scale: float | None = None

    def to_json(self) -> str:
        obj = asdict(self)
        obj = {"type": obj.pop("graph_type"), **obj}
        return json.dumps(obj, indent=2) + "\n"

    @classmethod
    def read(cls, graph_dir: str | os.PathLike) -> GraphInfo:
        path = Path(graph_dir) / GRAPH_INFO_FILE
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            obj["graph_type"] = obj.pop("type")
            return cls(**obj)
        except FileNotFoundError:
            raise GraphError(f"{path}: not found; is {graph_dir} a graph dir?") from None
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise GraphError(f"{path}: malformed graph info: {err}") from None


def _determinize_star(fst: kaldifst.StdVectorFst, config: MkGraphConfig, what: str) -> None:
    stopped = kaldifst.determinize_star(
        fst, delta=config.delta, max_states=config.max_states, use_log=True
    )
    if stopped:
        raise GraphError(f"determinization of {what} stopped at max_states={config.max_states}")


def compose_lg(
    l_disambig: kaldifst.StdVectorFst,
    g: kaldifst.StdVectorFst,
    *,
    config: MkGraphConfig | None = None,
) -> kaldifst.StdVectorFst:
    """``minimize_encoded(determinize_star(L_disambig o G))``, arc-sorted on input labels.
    The inputs are not modified."""
    config = config or MkGraphConfig()
    left, right = l_disambig.copy(), g.copy()
    kaldifst.arcsort(left, sort_type="olabel")
    kaldifst.arcsort(right, sort_type="ilabel")
    lg = kaldifst.compose(left, right)
    if lg.num_states == 0:
        raise GraphError("L o G is empty: do G's words appear in the lexicon (words.txt ids)?")
    _determinize_star(lg, config, "LG")
    kaldifst.minimize_encoded(lg, delta=config.delta)
    kaldifst.arcsort(lg, sort_type="ilabel")
    return lg


def build_hclg(
    lg: kaldifst.StdVectorFst,
    *,
    model: HmmModel,
    disambig_phone_ids: tuple[int, ...],
    config: MkGraphConfig | None = None,
) -> FstArrays:
    """HCLG (as arrays) from LG, following steps 2-4 of the module docstring."""
    config = config or MkGraphConfig()
    ctx = model.ctx_dep
    clg, ilabel_info = compose_context(
        lg,
        context_width=ctx.context_width,
        central_position=ctx.central_position,
        disambig_phone_ids=disambig_phone_ids,
    )
    ha_arrays, disambig_tids = make_h_transducer(
        ilabel_info=ilabel_info,
        ctx_dep=ctx,
        transition_model=model.transition_model,
        transition_scale=config.transition_scale,
    )
    ha = ha_arrays.to_fst()
    kaldifst.arcsort(ha, sort_type="olabel")
    hclga = kaldifst.compose(ha, clg)
    if hclga.num_states == 0:
        raise GraphError("H o CLG is empty")
    _determinize_star(hclga, config, "HCLGa")
    arrays = FstArrays.from_fst(hclga)
    ilabel = np.where(arrays.ilabel > model.transition_model.num_transition_ids, 0, arrays.ilabel)
    hclga = FstArrays(
        start=arrays.start,
        final=arrays.final,
        src=arrays.src,
        dst=arrays.dst,
        ilabel=ilabel.astype(np.int32),
        olabel=arrays.olabel,
        weight=arrays.weight,
    ).to_fst()
    kaldifst.minimize_encoded(hclga, delta=config.delta)
    return add_self_loops(
        FstArrays.from_fst(hclga),
        transition_model=model.transition_model,
        self_loop_scale=config.self_loop_scale,
    )


def _int_lines(values: np.ndarray) -> str:
    return "\n".join(map(str, values.tolist())) + "\n"


def write_graph_dir(
    out_dir: Path,
    *,
    lang: Lang,
    fst_name: str,
    fst: FstArrays,
    ilabel_to_pdf: np.ndarray,
    info: GraphInfo,
    extra_files: dict[str, str] | None = None,
) -> None:
    """Write a graph dir; ``graph.json`` last, so its presence means the graph is complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / GRAPH_INFO_FILE).unlink(missing_ok=True)
    fst.write(out_dir / fst_name)
    for name in ("words.txt", "phones.txt"):
        atomic_write_text(out_dir / name, (lang.path / name).read_text(encoding="utf-8"))
    atomic_write_text(out_dir / "ilabel_to_pdf.int", _int_lines(ilabel_to_pdf))
    for name, text in (extra_files or {}).items():
        atomic_write_text(out_dir / name, text)
    atomic_write_text(out_dir / GRAPH_INFO_FILE, info.to_json())


def _read_inputs(lang_dir: Path, model_dir: Path) -> tuple[Lang, HmmModel]:
    try:
        lang = read_lang(lang_dir)
    except AsrError as err:
        raise GraphError(f"cannot read lang dir {lang_dir}: {err}") from None
    try:
        model = HmmModel.load(model_dir)
        model.check_phones(lang.phones, what=f"lang dir {lang_dir}")
    except ModelError as err:
        raise GraphError(str(err)) from None
    return lang, model


def mkgraph(
    lang_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    g_fst_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: MkGraphConfig | None = None,
    force: bool = True,
) -> GraphInfo:
    """Build ``out_dir/HCLG.fst`` and its companions (see the module docstring).

    With ``force=False`` an up-to-date graph (outputs newer than the lang, model and G files,
    same scales) is kept and its recorded :class:`GraphInfo` returned.
    """
    config = config or MkGraphConfig()
    lang_dir, model_dir, out_dir = Path(lang_dir), Path(model_dir), Path(out_dir)
    g_fst_path = Path(g_fst_path)
    inputs = [
        lang_dir / "L_disambig.fst",
        lang_dir / "phones.txt",
        lang_dir / "words.txt",
        g_fst_path,
        *(model_dir / f for f in (SUMMARY_FILE, TREE_FILE, TRANSITIONS_FILE, PHONES_FILE)),
    ]
    outputs = [out_dir / "HCLG.fst", out_dir / GRAPH_INFO_FILE]
    if not force and is_up_to_date(outputs, inputs):
        old = GraphInfo.read(out_dir)
        wanted = ("hclg", str(lang_dir), str(model_dir))
        wanted += (config.self_loop_scale, config.transition_scale)
        if (
            old.graph_type,
            old.lang,
            old.model,
            old.self_loop_scale,
            old.transition_scale,
        ) == wanted:
            return old
    lang, model = _read_inputs(lang_dir, model_dir)
    if not g_fst_path.is_file():
        raise GraphError(f"{g_fst_path}: G.fst not found")
    g = kaldifst.StdVectorFst.read(str(g_fst_path))
    lg = compose_lg(lang.load_l_fst(disambig=True), g, config=config)
    hclg = build_hclg(lg, model=model, disambig_phone_ids=lang.disambig_phone_ids, config=config)
    tm = model.transition_model
    used = hclg.ilabel[hclg.ilabel > 0]
    if used.size and (
        used.max() > tm.num_transition_ids or tm.tid2pdf[used].max() >= model.num_pdfs
    ):
        raise GraphError("HCLG has input labels outside the model's transition-ids/pdfs")
    ilabel_to_pdf = tm.tid2pdf.astype(np.int64).copy()
    ilabel_to_phone = tm.tid2phone.astype(np.int64).copy()
    ilabel_to_pdf[0] = ilabel_to_phone[0] = -1
    info = GraphInfo(
        graph_type="hclg",
        num_pdfs=model.num_pdfs,
        num_ilabels=tm.num_transition_ids + 1,
        num_states=hclg.num_states,
        num_arcs=hclg.num_arcs,
        lang=str(lang_dir),
        model=str(model_dir),
        self_loop_scale=config.self_loop_scale,
        transition_scale=config.transition_scale,
    )
    write_graph_dir(
        out_dir,
        lang=lang,
        fst_name="HCLG.fst",
        fst=hclg,
        ilabel_to_pdf=ilabel_to_pdf,
        info=info,
        extra_files={"ilabel_to_phone.int": _int_lines(ilabel_to_phone)},
    )
    touch(outputs)  # newer than the inputs now, rewritten or not
    return info
