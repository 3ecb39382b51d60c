#!/usr/bin/env bash
# Builds a model for the local platform (docs/builds.md): copies the model's source into
# OUTPUT/src, creates a Python virtualenv (OUTPUT/venv) or an R library (OUTPUT/rlib), runs the
# model's build script in OUTPUT/src (with the interpreter its #! line names, else bash), writes
# OUTPUT/build.json and makes OUTPUT read-only. First it checks that what the runtime and the
# build script need is installed.
#
#   local-build.sh --runtime python3|r --source DIR --output DIR [--build-script NAME]
#
# Progress lines start with "==> "; the one failure line starts with "==> error: " (on stderr),
# and the builder (controller/platform/local/builder.ts) uses it as the build's message.
# OUTPUT/build.json is written last: a directory without it is not a finished build.
# MODELSHIP_PYTHON names the interpreter the virtualenv is made from (default: python3).
set -euo pipefail

fail() {
  echo "==> error: $*" >&2
  exit "${FAIL_CODE:-1}"
}

# A JSON string (quotes included), or null for an empty value.
json_string() {
  if [[ -z $1 ]]; then
    printf 'null'
    return
  fi
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

runtime="" source_dir="" output="" build_script="" explicit_script=0
while (($# > 0)); do
  case $1 in
    --runtime | --source | --output | --build-script)
      (($# >= 2)) || FAIL_CODE=2 fail "$1 needs a value"
      case $1 in
        --runtime) runtime=$2 ;;
        --source) source_dir=$2 ;;
        --output) output=$2 ;;
        --build-script) build_script=$2 explicit_script=1 ;;
      esac
      shift 2
      ;;
    *) FAIL_CODE=2 fail "unknown argument: $1 (usage: local-build.sh --runtime python3|r --source DIR --output DIR [--build-script NAME])" ;;
  esac
done

case $runtime in
  python3 | r) ;;
  "") FAIL_CODE=2 fail "--runtime is required (python3 or r)" ;;
  *) FAIL_CODE=2 fail "unknown runtime '$runtime' (expected python3 or r)" ;;
esac
[[ -n $source_dir ]] || FAIL_CODE=2 fail "--source is required"
[[ -n $output ]] || FAIL_CODE=2 fail "--output is required"
[[ -d $source_dir ]] || fail "source directory $source_dir does not exist"
if ((explicit_script)); then
  [[ -n $build_script ]] || FAIL_CODE=2 fail "--build-script needs a name"
  case /$build_script/ in
    //* | */../*) fail "build script $build_script must be a relative path inside the model's source" ;;
  esac
  [[ -f $source_dir/$build_script ]] || fail "build script $build_script not found in the model's source"
fi

# Preflight: what the runtime and the build script need must be on this machine, or the build
# fails now, naming it and how to get it, rather than a replica failing to start later.
python_interpreter=${MODELSHIP_PYTHON:-python3}
case $runtime in
  python3)
    command -v -- "$python_interpreter" >/dev/null ||
      fail "$python_interpreter is not on PATH: install Python 3 with venv (Debian/Ubuntu: apt-get install python3 python3-venv; or set MODELSHIP_PYTHON)"
    "$python_interpreter" -c 'import venv, ensurepip' 2>/dev/null ||
      fail "$python_interpreter cannot make a virtualenv (no venv or ensurepip module): install it (Debian/Ubuntu: apt-get install python3-venv)"
    ;;
  r)
    command -v Rscript >/dev/null ||
      fail "Rscript is not on PATH: install R (Debian/Ubuntu: apt-get install r-base-core r-cran-jsonlite; macOS: brew install r)"
    Rscript -e 'quit(status = if (requireNamespace("jsonlite", quietly = TRUE)) 0 else 3)' >/dev/null 2>&1 ||
      fail "the R package jsonlite is not installed: Rscript -e 'install.packages(\"jsonlite\")' (Debian/Ubuntu: apt-get install r-cran-jsonlite)"
    ;;
esac

# The build script's interpreter: its #! line (bash when it has none), taken as Linux takes it:
# the first word is the program, the rest of the line one argument (`#!/usr/bin/env -S a b`).
script_interpreter=(bash)
if [[ -n $build_script || -f $source_dir/build.sh || -f $source_dir/cdsw-build.sh ]]; then
  script_file=$source_dir/${build_script:-build.sh}
  [[ -f $script_file ]] || script_file=$source_dir/cdsw-build.sh
  first_line=""
  IFS= read -r first_line <"$script_file" || true
  if [[ $first_line == '#!'* ]]; then
    # A script saved with Windows line ends: its \r is not part of the interpreter's name.
    line=${first_line%$'\r'}
    line=${line#'#!'}
    line=${line#"${line%%[![:space:]]*}"}
    program=${line%%[[:space:]]*}
    argument=${line#"$program"}
    argument=${argument#"${argument%%[![:space:]]*}"}
    argument=${argument%"${argument##*[![:space:]]}"}
    if [[ -n $program ]]; then
      script_interpreter=("$program" ${argument:+"$argument"})
      if [[ $program == */env ]]; then
        # What env runs: the first word that is neither an option nor NAME=value.
        wanted=""
        read -r -a words <<<"${argument//[\"\']/}"
        for word in "${words[@]}"; do
          case $word in -* | *=*) continue ;; esac
          wanted=$word
          break
        done
        [[ -n $wanted ]] && command -v -- "$wanted" >/dev/null ||
          fail "the build script's interpreter ${wanted:-(none)} (from its line #!$line) is not on PATH: install it, or change the line"
      else
        [[ -x $program ]] ||
          fail "the build script's interpreter $program (from its line #!$line) does not exist: install it, or change the line"
      fi
    fi
  fi
fi

[[ ! -e $output && ! -L $output ]] || fail "output directory $output already exists"
mkdir -p -- "$(dirname -- "$output")"
mkdir -- "$output" || fail "cannot create the output directory $output"
output=$(cd -- "$output" && pwd)

echo "==> copying $source_dir to $output/src"
mkdir -- "$output/src"
cp -R -- "$source_dir/." "$output/src/"
chmod -R u+w -- "$output/src"

if [[ -z $build_script ]]; then
  if [[ -f $output/src/build.sh ]]; then
    build_script=build.sh
  elif [[ -f $output/src/cdsw-build.sh ]]; then
    build_script=cdsw-build.sh
  fi
fi

python="" rlib=""
case $runtime in
  python3)
    interpreter=$python_interpreter
    echo "==> creating the virtualenv $output/venv ($interpreter -m venv --system-site-packages)"
    "$interpreter" -m venv --system-site-packages "$output/venv" ||
      fail "could not create the virtualenv with $interpreter"
    python=$output/venv/bin/python
    export VIRTUAL_ENV=$output/venv
    export PATH=$VIRTUAL_ENV/bin:$PATH
    unset PYTHONHOME
    # modelship's Python package (the SDK: track_metric, model_metrics) imports in the build
    # script too, as CDSW's cdsw library does.
    PYTHONPATH=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../python" && pwd)${PYTHONPATH:+:$PYTHONPATH}
    export PYTHONPATH
    ;;
  r)
    rlib=$output/rlib
    echo "==> creating the R library $rlib"
    mkdir -- "$rlib"
    export R_LIBS_USER=$rlib
    ;;
esac

if [[ -n $build_script ]]; then
  echo "==> running build script $build_script"
  code=0
  (cd -- "$output/src" && exec "${script_interpreter[@]}" "./$build_script" </dev/null) || code=$?
  ((code == 0)) || FAIL_CODE=$code fail "build script $build_script exited with code $code"
else
  echo "==> no build script"
fi

# Everything but build.json first, so that build.json appears only when the rest is final.
chmod -R a-w -- "$output/src" ${python:+"$output/venv"} ${rlib:+"$rlib"}
{
  printf '{"runtime": %s, "python": %s, "rLibs": %s, "buildScript": %s}\n' \
    "$(json_string "$runtime")" "$(json_string "$python")" "$(json_string "$rlib")" \
    "$(json_string "$build_script")"
} >"$output/build.json.tmp"
mv -- "$output/build.json.tmp" "$output/build.json"
chmod a-w -- "$output/build.json" "$output"
echo "==> built $output"
