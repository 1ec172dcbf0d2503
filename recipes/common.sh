# Shared by recipes/<corpus>/run.sh: option parsing and stage guards.
# Source it after setting defaults for: stage, stop_stage, corpus_dir, nj (and any recipe options).
# Options are --name value or --name=value, with dashes mapped to underscores (--stop-stage -> stop_stage).

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

# stage_ok N: true when stage N is inside [stage, stop_stage].
stage_ok() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Use the project's virtualenv when `asr` is not already on PATH.
if ! command -v asr >/dev/null 2>&1 && [ -x "$root/.venv/bin/asr" ]; then
  PATH="$root/.venv/bin:$PATH"
fi
command -v asr >/dev/null 2>&1 || { echo "$0: the 'asr' command is not installed (see README.md)" >&2; exit 2; }
