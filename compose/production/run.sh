#!/bin/sh
# The production entry point around `corridor` (compose/production.yaml, deploy/k8s): it gives
# Corridor, from their files, the two things it reads only from the environment or from
# STATE_DIR/endpoints.json today, then runs the command it was given, as written. ADR 0182.
set -eu

# DATABASE_URL holds a password: it arrives as a file (a compose secret, a mounted k8s Secret),
# never in the container's environment definition, where `docker inspect` would show it.
if [ -n "${DATABASE_URL_FILE:-}" ]; then
    DATABASE_URL=$(cat "$DATABASE_URL_FILE")
    export DATABASE_URL
fi

# `corridor http --state-dir DIR` finds its stack only through DIR/endpoints.json, which
# `corridor up` writes on its own host. Elsewhere, write the two entries it needs (mode 0600).
if [ "${1:-}" = http ]; then
    python -c 'import os
from pathlib import Path
from services.endpoints import add_entries
add_entries(Path(os.environ["CORRIDOR_STATE_DIR"]),
            {"nats_url": os.environ["NATS_URL"], "database_url": os.environ["DATABASE_URL"]})'
fi

exec corridor "$@"
