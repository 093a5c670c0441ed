# Sourced by scripts/test: the browser tests drive Debian's Chromium (never a downloaded
# build). Install the package when it is missing and apt-get is available.
if [ -z "${OC_CHROMIUM:-}" ] && ! [ -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "Installing Debian's chromium package for the browser tests..." >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "Chromium is missing: install it and set OC_CHROMIUM to its path." >&2
  fi
fi
