# Sourced by the scripts: make `uv` available (installing it from PyPI when missing)
# and the project's environment in sync with uv.lock.
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
else
  python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
  UV=(python3 -m uv)
fi
"${UV[@]}" sync --frozen --quiet
