"""``asr results``: collect ``EXP/*/decode_*/wer`` into a markdown WER table (RESULTS.md).

Rows are models (``mono``, ``tri1``, ``tri2``, ``dnn``, ``ctc`` first, then the others
alphabetically), columns the decoded sets (``decode_<set>``); each cell is the
``%WER`` of that ``wer`` file, with the acoustic scale and training time from
``decode.json`` / ``train_summary.json`` when present. Nothing is typed in by hand:
every number is read from a recipe's output.

Several experiment directories (e.g. the MFCC and the LPCC runs of one recipe) go into one
table. The first directory's rows keep the bare model name; every other directory's rows
are labelled ``<model> (<tag>)``, where the tag is the directory name's suffix after the
first directory's name with leading ``_``/``-``/``.`` stripped (``exp/an4_lpcc`` next to
``exp/an4`` gives ``mono (lpcc)``), else the directory's own name, else (same name) its
path. Rows are grouped by model: ``mono``, ``mono (lpcc)``, ``tri1``, ``tri1 (lpcc)``, ...
With one directory the page is exactly the single-directory table.

Examples::

    asr results exp/an4 --out recipes/an4/RESULTS.md --title "AN4"
    asr results exp/an4 exp/an4_lpcc --out recipes/an4/RESULTS.md   # rows mono, mono (lpcc), ...
    asr results exp/yesno
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from pathlib import Path

from asr.cli.common import HelpFormatter

_ORDER = ("mono", "tri1", "tri2", "tri3", "dnn", "dnn_stream", "ctc", "ctc_stream")
_WER_LINE = re.compile(r"%WER\s+([0-9.]+)\s+\[\s*(\d+)\s*/\s*(\d+)")


_EPILOG = """examples:
  asr results exp/yesno
  asr results exp/an4 --out recipes/an4/RESULTS.md --title "AN4"
  asr results exp/an4 exp/an4_lpcc --out recipes/an4/RESULTS.md
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "results",
        help="collect EXP/*/decode_*/wer into a markdown WER table",
        description="Collect the WERs of every model under each EXP_DIR (EXP/<model>/decode_<set>/wer) "
        "into one markdown table (models x sets), printed or written to --out. With several "
        "EXP_DIRs the first one's rows keep the model name and the others' rows are labelled "
        "'<model> (<tag>)', the tag being the directory name's suffix after the first one's name "
        "(exp/an4_lpcc next to exp/an4: 'mono (lpcc)'), else the directory's name.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "exp_dirs", type=Path, nargs="+", metavar="EXP_DIR",
        help="a recipe's experiment dir (EXP/<model>/decode_<set>/wer)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, metavar="FILE", help="e.g. RESULTS.md")
    parser.add_argument("--title", default=None, help="heading (default: the first EXP_DIR's name)")
    parser.set_defaults(func=_results)


def _model_key(name: str) -> tuple[int, str]:
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def collect(exp_dir: Path) -> dict[str, dict[str, dict]]:
    """``model -> set -> {"wer", "errors", "words", "scale"}`` from ``EXP/*/decode_*/wer``."""
    table: dict[str, dict[str, dict]] = {}
    for wer_path in sorted(exp_dir.glob("*/decode_*/wer")):
        match = _WER_LINE.search(wer_path.read_text(encoding="utf-8"))
        if match is None:
            continue
        cell = {"wer": float(match[1]), "errors": int(match[2]), "words": int(match[3])}
        decode_json = wer_path.parent / "decode.json"
        if decode_json.is_file():
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                record = json.loads(decode_json.read_text())
                cell["scale"] = record["best_acoustic_scale"]
                if record.get("best_word_ins_penalty"):
                    cell["wip"] = float(record["best_word_ins_penalty"])
        for name, key in (("oracle_wer", "oracle"), ("wer_first_pass", "first_pass")):
            path = wer_path.parent / name
            if path.is_file():
                found = re.match(r"%WER\s+([0-9.]+)", path.read_text(encoding="utf-8"))
                if found:
                    cell[key] = float(found[1])
        model, data_set = wer_path.parent.parent.name, wer_path.parent.name[len("decode_") :]
        table.setdefault(model, {})[data_set] = cell
    return table


def _train_time(model_dir: Path) -> str:
    path = model_dir / "train_summary.json"
    if path.is_file():
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            return f"{summary['train_seconds'] / 60:.1f} min"
        except (json.JSONDecodeError, KeyError, TypeError):
            return ""
    return ""


def dir_tags(exp_dirs: list[Path]) -> list[str]:
    """Row-label tag of each directory: ``""`` for the first, else its name's suffix after the
    first's name (``an4_lpcc`` after ``an4``: ``"lpcc"``), else its name, else its path.

    >>> dir_tags([Path("exp/an4"), Path("exp/an4_lpcc"), Path("exp/other")])
    ['', 'lpcc', 'other']
    """
    first = exp_dirs[0].name
    tags = [""]
    for exp_dir in exp_dirs[1:]:
        name = exp_dir.name
        tag = name[len(first) :].lstrip("_-.") if name.startswith(first) else name
        tags.append(str(exp_dir) if not tag or tag in tags else tag)
    return tags


def render(exp_dir: Path | list[Path], title: str) -> str:
    """The markdown page for ``exp_dir`` (one directory, or a list of them: one table)."""
    exp_dirs = [exp_dir] if isinstance(exp_dir, Path) else list(exp_dir)
    tags = dir_tags(exp_dirs)
    rows: list[tuple[tuple, str, Path, dict[str, dict]]] = []  # (sort key, label, model dir, cells)
    for index, (one_dir, tag) in enumerate(zip(exp_dirs, tags, strict=True)):
        for model, cells in collect(one_dir).items():
            label = f"{model} ({tag})" if tag else model
            rows.append(((*_model_key(model), index), label, one_dir / model, cells))
    rows.sort(key=lambda row: row[0])
    sets = sorted({s for row in rows for s in row[3]}, key=lambda s: (s != "dev", s))
    names = " ".join(str(d) for d in exp_dirs)
    sources = f"`{exp_dirs[0]}/*/decode_*/wer`" + "".join(
        f", `{d}/*/decode_*/wer` for the `({tag})` rows"
        for d, tag in zip(exp_dirs[1:], tags[1:], strict=True)
    )
    lines = [
        f"# {title}",
        "",
        f"Generated by `asr results {names}` from {sources} "
        "(%WER [errors / words, acoustic scale, word-insertion penalty when tuned on lattices] "
        "(first-pass %WER when the lattices were rescored with a larger LM, lattice oracle %WER "
        "when decoded into lattices); training time of the neural models); "
        "every number comes from a recipe run.",
        "",
        "| model | " + " | ".join(f"%WER {s}" for s in sets) + " | nnet training |",
        "|---|" + "---|" * len(sets) + "---|",
    ]
    for _key, label, model_dir, cells_by_set in rows:
        cells = []
        for data_set in sets:
            cell = cells_by_set.get(data_set)
            if cell is None:
                cells.append("")
                continue
            scale = f", {cell['scale']:g}" if "scale" in cell else ""
            scale += f", wip {cell['wip']:g}" if "wip" in cell else ""
            notes = [f"first pass {cell['first_pass']:.2f}"] if "first_pass" in cell else []
            notes += [f"oracle {cell['oracle']:.2f}"] if "oracle" in cell else []
            oracle = f" ({', '.join(notes)})" if notes else ""
            cells.append(f"{cell['wer']:.2f} [{cell['errors']} / {cell['words']}{scale}]{oracle}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_train_time(model_dir)} |")
    if not rows:
        lines.append("| (no decode_*/wer files yet) |" + " |" * (len(sets) + 1))
    return "\n".join(lines) + "\n"


def _results(args: argparse.Namespace) -> int:
    from asr.errors import AsrError
    from asr.fileio import atomic_write_text

    for exp_dir in args.exp_dirs:
        if not exp_dir.is_dir():
            raise AsrError(f"{exp_dir}: experiment directory not found")
    resolved = [d.resolve() for d in args.exp_dirs]
    if len(set(resolved)) != len(resolved):
        raise AsrError(
            f"an experiment directory is given twice: {' '.join(map(str, args.exp_dirs))}"
        )
    text = render(args.exp_dirs, args.title or args.exp_dirs[0].name)
    if args.out is not None:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    print(text, end="")
    return 0
