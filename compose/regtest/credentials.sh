#!/bin/sh
# The regtest stack's NATS credentials and the engine's signing key, made once in the shared
# state volume by the `credentials` job of compose/regtest.yaml (the Corridor image):
#   - one nkey credential per process, with `corridor creds add` (seed in auth/, mode 0600):
#     each node has an executor's and a reconciler's;
#   - the nats-server authorization block rendered from the registry into $NATS_AUTH_DIR;
#   - the engine's Ed25519 work-order key in keys/ (executors read its public half).
# Idempotent: an existing seed is kept. Regtest only: every process shares one volume here;
# production gives each process only its own seed (compose/production.yaml, secrets:).
set -eu

STATE=${CORRIDOR_STATE_DIR:-/var/lib/corridor}
NATS_AUTH_DIR=${NATS_AUTH_DIR:-/etc/nats/auth}
REGIONS="us eu asia"

add() {  # add ROLE ID [extra corridor creds add options]
    role=$1 id=$2
    shift 2
    seed="$STATE/auth/$role-$id.nk"
    if [ ! -f "$seed" ]; then
        corridor creds add --state-dir "$STATE" --role "$role" --id "$id" --out "$seed" "$@"
    fi
}

mkdir -p "$STATE/auth" "$NATS_AUTH_DIR"
add engine engine-1
add gateway http
add operator operator-1
add operator operator-2
add auditor auditor-1
add caller local
for region in $REGIONS; do
    for impl in lnd cln; do
        add executor "$region-$impl" --region "$region" --node "$region-$impl"
        add reconciler "$region-$impl" --region "$region" --node "$region-$impl"
    done
done

# No `corridor` command renders the server's authorization block for a nats-server it does not
# run (`corridor up` renders its own); the same function does it here.
python - "$STATE" "$NATS_AUTH_DIR/auth.conf" <<'PY'
import sys
from pathlib import Path

from services.identity.nats_auth import authorization_conf
from services.identity.registry import load_registry, registry_path
from services.signing.file_keys import keys_dir, load_or_create_signer

state, out = Path(sys.argv[1]), Path(sys.argv[2])
out.write_text(authorization_conf(load_registry(registry_path(state))))
# The engine's work-order key: made here so executors find its public half before the engine
# first starts (the engine would otherwise make it on its first start).
load_or_create_signer(keys_dir(state))
PY
# Run as root on fresh volumes: hand them to the image's user, who runs every other process.
if [ "$(id -u)" = 0 ]; then
    chown -R "${CORRIDOR_UID:-10001}:${CORRIDOR_UID:-10001}" "$STATE"
fi
echo "credentials ready in $STATE/auth; authorization in $NATS_AUTH_DIR/auth.conf"
