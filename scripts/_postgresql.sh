# Sourced by scripts/test: the PostgreSQL tests start a throwaway cluster from Debian's
# postgresql package (binaries under /usr/lib/postgresql/<version>/bin). Install the
# package when it is missing and apt-get is available.
if [ -z "${OC_POSTGRESQL_BIN:-}" ] && ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "Installing Debian's postgresql package for the PostgreSQL tests..." >&2
    $SUDO apt-get update -qq
    # The package's own "main" cluster is not needed (the tests make their own): ask
    # postgresql-common not to create one, and keep that answer over the packaged file.
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
      $SUDO mkdir -p /etc/postgresql-common
      echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      postgresql >/dev/null
  else
    echo "PostgreSQL is missing: install it and set OC_POSTGRESQL_BIN to its bin directory." >&2
  fi
fi
