"""Kaldi data directories, corpus preparers (AN4, FSDD, yesno, speechocean762) and speed
perturbation.

>>> from asr.data import read_data_dir, prepare_yesno  # doctest: +SKIP
>>> sets = prepare_yesno("corpora/yesno", "data/yesno")  # doctest: +SKIP
>>> len(sets["train"]), len(sets["test"])  # doctest: +SKIP
(30, 30)
"""

from asr.data.an4 import prepare_an4, select_dev_speakers
from asr.data.datadir import (
    DATA_DIR_FILES,
    DataDir,
    read_data_dir,
    read_kaldi_map,
    total_duration_seconds,
    validate_data_dir,
    write_data_dir,
    write_data_dirs,
    write_kaldi_map,
)
from asr.data.fsdd import prepare_fsdd
from asr.data.perturb import SpeedPerturbConfig, perturb_data_dir_speed, speed_perturb
from asr.data.speechocean762 import (
    Speechocean762Set,
    prepare_speechocean762,
    read_speechocean762_portion,
    select_stratified_dev_speakers,
)
from asr.data.yesno import prepare_yesno

__all__ = [
    "DATA_DIR_FILES",
    "DataDir",
    "SpeedPerturbConfig",
    "Speechocean762Set",
    "perturb_data_dir_speed",
    "prepare_an4",
    "prepare_fsdd",
    "prepare_speechocean762",
    "prepare_yesno",
    "read_data_dir",
    "read_kaldi_map",
    "read_speechocean762_portion",
    "select_dev_speakers",
    "select_stratified_dev_speakers",
    "speed_perturb",
    "total_duration_seconds",
    "validate_data_dir",
    "write_data_dir",
    "write_data_dirs",
    "write_kaldi_map",
]
