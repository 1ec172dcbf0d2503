# Shared by recipes/<corpus>/run.sh: option parsing and stage guards.
# Source it after setting defaults for: stage, stop_stage, corpus_dir, nj (and any recipe options).
# Options are --name value or --name=value, with dashes mapped to underscores (--stop-stage -> stop_stage).
#
# Hyperparameters live in recipes/<corpus>/conf/*.conf (Kaldi-style: one option a line,
# --name=value, # comments); the recipe passes a file to asr as @FILE (`asr train mono DATA LANG
# EXP @"$conf/mono.conf"`), which asr expands in place (argparse's fromfile_prefix_chars; see
# asr/cli/main.py). Options the recipe decides itself (--nj, paths, --mode) stay in run.sh.
#
# Stage numbers are the same in every recipe; a recipe without a step skips its numbers:
#   0 data dirs, 1 features, 2 lang, 3 LM + G.fst, 4 monophone topology + graph,
#   5 mono, 6 mono decode, 7/8 tri1, 9/10 tri2, 11/12 tri3 (SAT), 13/14 DNN, 15/16 CTC,
#   17/18 streaming CTC, 19 RESULTS.md, 20 bundles and plots.
#
# Every stage that runs is timed: stage_ok N runs the recipe again for stage N alone
# (--stage N --stop-stage N) under `asr time-stage`, which merges the stage's wall seconds, CPU
# seconds (all its processes) and peak memory into $exp/stage_times.json (other stages kept;
# a failed stage is not recorded and stops the recipe with its status), with the training
# set's size (hours) and the trainers' EXP/<model>/iteration_times.json. See asr/timing.py.

recipe_args=("$@")                 # for the timed run of each stage
recipe_script="$(realpath "$0")"
recipe_cwd="$PWD"                  # relative options (--corpus-dir) are relative to it
stage_names=(data features lang lm mono_graph mono mono_decode tri1 tri1_decode tri2 tri2_decode
  tri3 tri3_decode dnn dnn_decode ctc ctc_decode ctc_stream ctc_stream_decode results export)

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help)
      sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
      exit 0 ;;
    --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
    --*)
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 2; fi
      name="$1"; value="$2"; shift 2 ;;
    *) echo "$0: unexpected argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  var="${name#--}"; var="${var//-/_}"
  if [ -z "${!var+x}" ]; then echo "$0: unknown option $name (see --help)" >&2; exit 2; fi
  printf -v "$var" '%s' "$value"
done

# stage_ok N: true when stage N is inside [stage, stop_stage] and this is the timed run of
# stage N alone (ASR_TIMED_STAGE set). Otherwise, for a stage in the range, it runs that timed
# run (the recipe again, under `asr time-stage`, from where the recipe was started), exits on
# its failure and is false: the stage's body runs once, in the timed run.
stage_ok() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  [ -n "${ASR_TIMED_STAGE:-}" ] && return 0
  local rc=0
  (cd "$recipe_cwd" && ASR_TIMED_STAGE="$1" asr time-stage --stage "$1" \
    --name "${stage_names[$1]:-stage$1}" --out "$root/$exp/stage_times.json" \
    --data-dir "$root/$data/train" -- \
    "$BASH" "$recipe_script" ${recipe_args[@]+"${recipe_args[@]}"} --stage "$1" --stop-stage "$1") || rc=$?
  [ "$rc" -eq 0 ] || exit "$rc"
  return 1
}
# log MESSAGE: a time-stamped line on stderr (a timed run of one stage leaves the recipe's
# closing "done" to the run that started it).
log() {
  [ -n "${ASR_TIMED_STAGE:-}" ] && [ "$*" = done ] && return 0
  echo "[$(date +%H:%M:%S)] $*" >&2
}

# Use the project's virtualenv when `asr` is not already on PATH.
if ! command -v asr >/dev/null 2>&1 && [ -x "$root/.venv/bin/asr" ]; then
  PATH="$root/.venv/bin:$PATH"
fi
command -v asr >/dev/null 2>&1 || { echo "$0: the 'asr' command is not installed (see README.md)" >&2; exit 2; }

# feat_suffix: "" for the default MFCC front-end, "_lpcc" for LPCC (the recipe then works in
# data/<corpus>_lpcc and exp/<corpus>_lpcc, so both front-ends' models live side by side).
feat_suffix() {
  case "$feat_type" in
    mfcc) echo "" ;;
    lpcc) echo "_lpcc" ;;
    *) echo "$0: --feat-type must be mfcc or lpcc, not '$feat_type'" >&2; exit 2 ;;
  esac
}

# results_dirs CORPUS: the exp dirs that RESULTS.md tabulates: exp/CORPUS, and exp/CORPUS_lpcc
# when an LPCC run exists.
results_dirs() {
  local dir
  for dir in "exp/$1" "exp/$1_lpcc"; do
    [ -d "$dir" ] && echo "$dir"
  done
  return 0
}

# The functions below use the recipe's $data, $exp, $conf and $nj.

# decode_model MODEL SELECT_SET SCALES [OTHER_SET...]: graph exp/MODEL/graph must exist. Decodes
# SELECT_SET at each acoustic scale in SCALES (comma-separated; the best on SELECT_SET is kept),
# then every OTHER_SET that exists at that scale. The search options come from $conf/decode.conf
# (beam 10 / max-active 1500; recipes/an4/conf/decode.conf says why); the bundles inherit them.
# When decode.conf has --lattice-beam, SELECT_SET is decoded once into lattices and scored at
# every scale x word-insertion penalty in $word_ins_penalties (when the recipe sets it), the
# other sets at the winning pair; with $rescore_lm (an ARPA file) the lattices are rescored
# with it first (the first pass's WER: decode_<set>/wer_first_pass).
decode_model() {
  local model=$1 select=$2 scales=$3 set
  shift 3
  asr decode "$exp/$model" "$data/$select" --graph "$exp/$model/graph" @"$conf/decode.conf" \
    --out "$exp/$model/decode_$select" --nj "$nj" --acoustic-scales "$scales" \
    ${word_ins_penalties:+--word-ins-penalties "$word_ins_penalties"} \
    ${rescore_lm:+--rescore-lm "$rescore_lm" --old-g "$data/lang/G.fst"}
  for set in "$@"; do
    [ -d "$data/$set" ] || continue
    asr decode "$exp/$model" "$data/$set" --graph "$exp/$model/graph" @"$conf/decode.conf" \
      --out "$exp/$model/decode_$set" --nj "$nj" --acoustic-scale-from "$exp/$model/decode_$select" \
      ${rescore_lm:+--rescore-lm "$rescore_lm" --old-g "$data/lang/G.fst"}
  done
}

# best_gmm_ali: the alignments of the best GMM trained so far (tri3 > tri2 > tri1 > mono).
best_gmm_ali() {
  local model
  for model in tri3 tri2 tri1 mono; do
    if [ -d "$exp/$model/ali" ]; then echo "$exp/$model/ali"; return; fi
  done
  echo "$0: no GMM alignments under $exp (run the GMM stages first)" >&2
  return 1
}

# export_all CORPUS SELECT_SET: a bundle exp/<model>/bundle of every model with a graph (decoding
# defaults from its SELECT_SET decode), the mono alignment plot of the first test (else
# SELECT_SET) utterance, and the chart of recipes/CORPUS/RESULTS.md when it exists.
export_all() {
  local corpus=$1 select=$2 model plot_set wav
  for model in mono tri1 tri2 tri3 dnn ctc ctc_stream; do
    [ -d "$exp/$model/graph" ] || continue
    local decode_opt=()
    [ -f "$exp/$model/decode_$select/decode.json" ] && decode_opt=(--decode-dir "$exp/$model/decode_$select")
    asr export "$exp/$model" --graph "$exp/$model/graph" --out "$exp/$model/bundle" \
      --lang "$data/lang" "${decode_opt[@]}"
  done
  if [ -d "$exp/mono/bundle" ]; then
    plot_set=test
    [ -d "$data/test" ] || plot_set=$select
    wav=$(awk 'NR == 1 { $1 = ""; sub(/^ +/, ""); print; exit }' "$data/$plot_set/wav.scp")
    asr plot alignment --model "$exp/mono/bundle" "$wav" --out "$exp/mono/alignment.png"
  fi
  if [ -f "recipes/$corpus/RESULTS.md" ]; then
    asr plot results "recipes/$corpus/RESULTS.md" --out "recipes/$corpus/results.png"
  fi
}
