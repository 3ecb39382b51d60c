#!/usr/bin/env bash
# Builds a model for the local platform (docs/builds.md): copies the model's source into
# OUTPUT/src, creates a Python virtualenv (OUTPUT/venv) or an R library (OUTPUT/rlib), runs the
# model's build script in OUTPUT/src (with the interpreter its #! line names, else bash), writes
# OUTPUT/build.json and makes OUTPUT read-only. First it checks that what the runtime and the
# build script need is installed.
#
#   local-build.sh --runtime python3|r --source DIR --output DIR [--build-script NAME]
#                  [--env-cache DIR]
#
# With --env-cache, builds of the same dependency set share one environment: the venv (or R
# library) is made once, in DIR/<key>, where <key> hashes the runtime and its version, the build
# script and the requirements files (requirements*.txt and the files they include with -r or
# -c; R: install.R, DESCRIPTION). The first build of a key makes it and its build script fills
# it; it is read-only from then on, and a later build of the same key links it (OUTPUT/venv ->
# DIR/<key>/venv) and runs its build script in it, where the same pip install finds everything
# installed. A code-only change then installs nothing. A build that fails leaves no entry behind.
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

runtime="" source_dir="" output="" build_script="" explicit_script=0 env_cache=""
while (($# > 0)); do
  case $1 in
    --runtime | --source | --output | --build-script | --env-cache)
      (($# >= 2)) || FAIL_CODE=2 fail "$1 needs a value"
      case $1 in
        --runtime) runtime=$2 ;;
        --source) source_dir=$2 ;;
        --output) output=$2 ;;
        --build-script) build_script=$2 explicit_script=1 ;;
        --env-cache) env_cache=$2 ;;
      esac
      shift 2
      ;;
    *) FAIL_CODE=2 fail "unknown argument: $1 (usage: local-build.sh --runtime python3|r --source DIR --output DIR [--build-script NAME] [--env-cache DIR])" ;;
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

# The model's source, as the build script gets it (writable: it may write model.pkl).
copy_source() {
  mkdir -- "$output/src"
  cp -R -- "$source_dir/." "$output/src/"
  chmod -R u+w -- "$output/src"
}
echo "==> copying $source_dir to $output/src"
copy_source

if [[ -z $build_script ]]; then
  if [[ -f $output/src/build.sh ]]; then
    build_script=build.sh
  elif [[ -f $output/src/cdsw-build.sh ]]; then
    build_script=cdsw-build.sh
  fi
fi

# The environment's cache entry, when there is a cache: DIR/<key> of what decides what the build
# script installs. `shared` is set when this build uses an entry (made now, or before), and
# `making` when it makes it, holding DIR/<key>.lock while it does: the entry is published
# (complete) only if the build succeeds. An entry without `complete` whose lock nobody holds was
# left by a build that was killed: it is made again.
shared="" making=""
# Removes a (read-only) cache entry.
remove_entry() {
  chmod -R u+w -- "$1" 2>/dev/null || true
  rm -rf -- "$1"
}
# Prints a requirements file for the key — its path in the source and its text — and, once
# each, the files it includes (-r/--requirement, -c/--constraint, relative to the file that
# names them, as pip reads them): a change to an included file is a change to what is
# installed. An include that is not a file in the build (a URL) is only its line.
# Paths are made canonical first, so that a file that includes itself by another spelling
# (`-r ./a.txt`) is still read once.
declare -A keyed_files=()
# The source's canonical path, that each keyed file's name is relative to (set where it is used).
source_root=""
key_requirements() {
  local file line target
  file=$(realpath -e -- "$1" 2>/dev/null) || return 0
  [[ -f $file && -z ${keyed_files[$file]:-} ]] || return 0
  keyed_files[$file]=1
  printf 'file %s\n' "${file#"$source_root/"}"
  cat -- "$file"
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^[[:space:]]*(-r|-c|--requirement|--constraint)[[:space:]=]*([^[:space:]]+) ]]; then
      target=${BASH_REMATCH[2]}
      [[ $target == /* ]] || target=$(dirname -- "$file")/$target
      key_requirements "$target"
    fi
  done <"$file"
}
if [[ -n $env_cache ]]; then
  mkdir -p -- "$env_cache"
  # Absolute: builds link to it, and a venv's scripts name its interpreter by its path.
  env_cache=$(cd -- "$env_cache" && pwd)
  key=$(
    {
      printf 'runtime %s\n' "$runtime"
      case $runtime in
        python3) "$python_interpreter" -c 'import sys; print(sys.version, sys.executable, sys.prefix)' ;;
        r) Rscript --version 2>&1 && command -v Rscript ;;
      esac
      printf 'build script %s\n' "$build_script"
      if [[ -n $build_script ]]; then cat -- "$output/src/$build_script"; fi
      source_root=$(realpath -- "$output/src")
      for file in "$output/src"/requirements*.txt "$output/src"/constraints*.txt; do
        key_requirements "$file"
      done
      for file in "$output/src/pyproject.toml" "$output/src/setup.py" "$output/src/setup.cfg" \
        "$output/src/install.R" "$output/src/DESCRIPTION" "$output/src/renv.lock"; do
        if [[ -f $file ]]; then printf 'file %s\n' "${file##*/}" && cat -- "$file"; fi
      done
      # Where packages come from is part of what gets installed.
      env | grep -E '^(PIP_|UV_|R_REPOS|CRAN)' | sort || true
    } | sha256sum | cut -c1-32
  )
  entry=$env_cache/$key
  if [[ -f $entry/complete ]]; then
    shared=$entry
    echo "==> using the environment of earlier builds with the same build script and requirements ($entry)"
  elif exec {lock}>"$entry.lock" && flock -n "$lock"; then
    if [[ -e $entry ]]; then
      echo "==> removing the environment a killed build left half made ($entry)"
      remove_entry "$entry"
    fi
    mkdir -- "$entry" || fail "cannot create the shared environment $entry"
    shared=$entry making=$entry
    # Whatever ends this build before it is published takes the half-made entry with it.
    trap '[[ -f $making/complete ]] || remove_entry "$making"' EXIT
  else
    echo "==> another build is making the environment for this build script and requirements; this one makes its own"
  fi
fi

python="" rlib=""
# Makes the build's environment: its own (`private`), or the shared entry's (made now when this
# build makes it, else linked).
prepare_environment() {
  case $runtime in
    python3)
      interpreter=$python_interpreter
      venv=$output/venv
      if [[ $1 == shared ]]; then venv=$shared/venv; fi
      if [[ $1 == private || -n $making ]]; then
        echo "==> creating the virtualenv $venv ($interpreter -m venv --system-site-packages)"
        "$interpreter" -m venv --system-site-packages "$venv" ||
          fail "could not create the virtualenv with $interpreter"
      fi
      if [[ $1 == shared ]]; then ln -s -- "$venv" "$output/venv"; fi
      python=$output/venv/bin/python
      # The venv's own path: its scripts (pip) name its interpreter by it.
      export VIRTUAL_ENV=$venv
      export PATH=$VIRTUAL_ENV/bin:$base_path
      unset PYTHONHOME
      # modelship's Python package (the SDK: track_metric, model_metrics) imports in the build
      # script too, as CDSW's cdsw library does.
      PYTHONPATH=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../python" && pwd)${base_pythonpath:+:$base_pythonpath}
      export PYTHONPATH
      ;;
    r)
      rlib=$output/rlib
      library=$rlib
      if [[ $1 == shared ]]; then library=$shared/rlib; fi
      if [[ $1 == private || -n $making ]]; then
        echo "==> creating the R library $library"
        mkdir -- "$library"
      fi
      if [[ $1 == shared ]]; then ln -s -- "$library" "$rlib"; fi
      export R_LIBS_USER=$library
      ;;
  esac
}
base_path=$PATH base_pythonpath=${PYTHONPATH:-}

# Runs the build script; its exit code in `code`.
run_build_script() {
  code=0
  (cd -- "$output/src" && exec "${script_interpreter[@]}" "./$build_script" </dev/null) || code=$?
}

if [[ -n $shared ]]; then prepare_environment shared; else prepare_environment private; fi
if [[ -n $build_script ]]; then
  echo "==> running build script $build_script"
  run_build_script
  if ((code != 0)) && [[ -n $shared && -z $making ]]; then
    # In the shared environment, which is read-only: a script that installs more than the
    # first build did (an R install.packages, pip --upgrade) fails there. It gets an
    # environment of its own, and the source as it was, once.
    echo "==> build script $build_script exited with code $code in the shared environment; running it again in an environment of its own"
    rm -f -- "$output/venv" "$output/rlib"
    chmod -R u+w -- "$output/src"
    rm -rf -- "$output/src"
    copy_source
    shared=""
    prepare_environment private
    run_build_script
  fi
  ((code == 0)) || FAIL_CODE=$code fail "build script $build_script exited with code $code"
else
  echo "==> no build script"
fi

# Everything but build.json first, so that build.json appears only when the rest is final. A
# shared environment is made read-only once, by the build that made it, and then published.
if [[ -n $making ]]; then
  chmod -R a-w -- "$making"/venv "$making"/rlib 2>/dev/null || true
  chmod u+w -- "$making"
  touch -- "$making/complete"
  chmod a-w -- "$making"
fi
chmod -R a-w -- "$output/src"
if [[ -z $shared ]]; then
  chmod -R a-w -- ${python:+"$output/venv"} ${rlib:+"$rlib"}
fi
{
  printf '{"runtime": %s, "python": %s, "rLibs": %s, "buildScript": %s}\n' \
    "$(json_string "$runtime")" "$(json_string "$python")" "$(json_string "$rlib")" \
    "$(json_string "$build_script")"
} >"$output/build.json.tmp"
mv -- "$output/build.json.tmp" "$output/build.json"
chmod a-w -- "$output/build.json" "$output"
echo "==> built $output"
