"""CTC decoding graphs: the token topology T and TLG = T o LG (EESEN-style).

Tokens are numbered ``0 .. num_tokens-1`` with ``0`` the blank; T's input labels are
``token + 1`` (so 0 stays epsilon) and its outputs are phones. State ``i`` of T means "the last
token read was ``i``" (state 0: blank or nothing, also the start); every state is final.
From state ``i``, token ``j`` leads to state ``j``, emitting ``j``'s phone when ``j`` is not the
blank and differs from ``i``; repeating ``i`` (or the blank) loops on ``i`` emitting nothing —
the CTC rule "merge repeats, then drop blanks".

Disambiguation phones of LG pass through T as self-loops on every state (input labels above the
tokens) and become epsilons in TLG.

Output of :func:`mktlg`: ``OUT/TLG.fst``, ``OUT/tokens.txt`` (``<blk> 0`` then the token phones),
``OUT/words.txt``, ``OUT/phones.txt``, ``OUT/ilabel_to_pdf.int`` (line ``i`` = ``i - 1``, the
token column of input label ``i``; line 0 is ``-1``) and ``OUT/graph.json``
(``"type": "tlg"``, ``"num_pdfs"`` = number of tokens including the blank).

>>> t = make_ctc_topo(3)          # blank + 2 tokens
>>> t.num_states, t.num_arcs      # 3 self-loops + 3 * 2 moves
(3, 9)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import kaldifst
import numpy as np

from asr.errors import AsrError, GraphError
from asr.fileio import is_up_to_date, touch
from asr.graph.hmm_fst import FstArrays
from asr.graph.mkgraph import GRAPH_INFO_FILE, GraphInfo, compose_lg, write_graph_dir
from asr.lang import read_lang

BLANK_SYMBOL = "<blk>"


def make_ctc_topo(
    num_tokens: int,
    *,
    olabels: Sequence[int] | None = None,
    passthrough: Sequence[int] = (),
) -> FstArrays:
    """The CTC topology over ``num_tokens`` tokens (blank included) as arrays.

    ``olabels[k]`` is the output label of token ``k`` (default ``k``; ``olabels[0]`` must be 0);
    ``passthrough`` lists output labels (disambiguation phones) added as self-loops on every
    state with input labels ``num_tokens + 1 + i``.
    """
    if num_tokens < 2:
        raise GraphError(f"CTC needs the blank and at least one token, got {num_tokens}")
    out = np.arange(num_tokens) if olabels is None else np.asarray(olabels, dtype=np.int64)
    if out.shape != (num_tokens,) or out[0] != 0 or np.any(out[1:] <= 0):
        raise GraphError("olabels must map the blank to 0 and every other token to a label > 0")
    src, dst = np.divmod(np.arange(num_tokens * num_tokens), num_tokens)  # all (i, j) pairs
    olabel = np.where(src == dst, 0, out[dst])
    passthrough = np.asarray(passthrough, dtype=np.int64)
    loop_states = np.repeat(np.arange(num_tokens), len(passthrough))
    loop_index = np.tile(np.arange(len(passthrough)), num_tokens)
    return FstArrays(
        start=0,
        final=np.zeros(num_tokens, dtype=np.float32),
        src=np.concatenate([src, loop_states]).astype(np.int32),
        dst=np.concatenate([dst, loop_states]).astype(np.int32),
        ilabel=np.concatenate([dst + 1, num_tokens + 1 + loop_index]).astype(np.int32),
        olabel=np.concatenate([olabel, passthrough[loop_index]]).astype(np.int32),
        weight=np.zeros(num_tokens * num_tokens + len(loop_states), dtype=np.float32),
    )


def mktlg(
    lang_dir: str | os.PathLike,
    tokens: Sequence[str] | None,
    g_fst_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    force: bool = True,
) -> GraphInfo:
    """Build ``out_dir/TLG.fst`` (see the module docstring).

    ``tokens`` are the phone symbols of tokens ``1, 2, ...`` (the blank is token 0); ``None``
    means every real phone of the lang dir in id order. With ``force=False`` an up-to-date graph
    is kept.
    """
    lang_dir, out_dir, g_fst_path = Path(lang_dir), Path(out_dir), Path(g_fst_path)
    inputs = [lang_dir / "L_disambig.fst", lang_dir / "phones.txt", g_fst_path]
    outputs = [out_dir / "TLG.fst", out_dir / "tokens.txt", out_dir / GRAPH_INFO_FILE]
    if not force and is_up_to_date(outputs, inputs) and tokens is None:
        old = GraphInfo.read(out_dir)
        if (old.graph_type, old.lang) == ("tlg", str(lang_dir)):
            return old
    try:
        lang = read_lang(lang_dir)
    except AsrError as err:
        raise GraphError(f"cannot read lang dir {lang_dir}: {err}") from None
    disambig = set(lang.disambig_phone_ids)
    if tokens is None:
        token_ids = [i for _, i in lang.phones.pairs if i != 0 and i not in disambig]
    else:
        unknown = [t for t in tokens if t not in lang.phones]
        if unknown:
            raise GraphError(f"tokens {unknown[:10]} are not phones of {lang_dir}")
        token_ids = [lang.phones[t] for t in tokens]
        if len(set(token_ids)) != len(token_ids) or set(token_ids) & (disambig | {0}):
            raise GraphError("tokens must be distinct real phones (no <eps>, no #n)")
    if not g_fst_path.is_file():
        raise GraphError(f"{g_fst_path}: G.fst not found")
    lg = compose_lg(lang.load_l_fst(disambig=True), kaldifst.StdVectorFst.read(str(g_fst_path)))
    num_tokens = len(token_ids) + 1
    topo = make_ctc_topo(num_tokens, olabels=[0, *token_ids], passthrough=sorted(disambig)).to_fst()
    kaldifst.arcsort(topo, sort_type="olabel")
    tlg = kaldifst.compose(topo, lg)
    if tlg.num_states == 0:
        raise GraphError("T o LG is empty: do the tokens cover the lexicon's phones?")
    arrays = FstArrays.from_fst(tlg)
    arrays = FstArrays(
        start=arrays.start,
        final=arrays.final,
        src=arrays.src,
        dst=arrays.dst,
        ilabel=np.where(arrays.ilabel > num_tokens, 0, arrays.ilabel).astype(np.int32),
        olabel=arrays.olabel,
        weight=arrays.weight,
    )
    info = GraphInfo(
        graph_type="tlg",
        num_pdfs=num_tokens,
        num_ilabels=num_tokens + 1,
        num_states=arrays.num_states,
        num_arcs=arrays.num_arcs,
        lang=str(lang_dir),
    )
    token_lines = [f"{BLANK_SYMBOL} 0"]
    token_lines += [f"{lang.phones.symbol(p)} {k}" for k, p in enumerate(token_ids, 1)]
    write_graph_dir(
        out_dir,
        lang=lang,
        fst_name="TLG.fst",
        fst=arrays,
        ilabel_to_pdf=np.arange(-1, num_tokens),
        info=info,
        extra_files={"tokens.txt": "\n".join(token_lines) + "\n"},
    )
    touch(outputs)  # newer than the inputs now, rewritten or not
    return info
