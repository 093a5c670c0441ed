# Sourced by the scripts: make `uv` available (installing it from PyPI when missing)
# and the project's environment in sync with uv.lock.
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
else
  python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
  UV=(python3 -m uv)
fi
# Bytecode compiled once at install: with PYTHONDONTWRITEBYTECODE set (as on CI machines)
# every flow-run process would otherwise compile Prefect's sources again (about 7.5 s
# instead of 2.8 s to import it on 2 cores).
"${UV[@]}" sync --frozen --quiet --compile-bytecode
