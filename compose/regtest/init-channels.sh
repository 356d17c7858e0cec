#!/bin/sh
# Fund the regtest nodes and open the channels, with each node's own CLI (bitcoin-cli, lncli,
# lightning-cli) run in its container. Run it on the host once `up -d` has the nodes running:
#
#   docker-compose -f compose/regtest.yaml up -d --build
#   compose/regtest/init-channels.sh
#
# Channels: each region's CLN node opens to its LND node, each LND node opens to its CLN node,
# and the LND nodes form a ring us -> eu -> asia -> us, so every corridor in the default table
# (services/settings.py DEFAULT_CORRIDORS) has a route both ways. Idempotent enough to re-run:
# an existing channel to a peer is skipped. Not run here (no container engine); checked by
# tests/deploy/test_compose.py (syntax, and every service it names exists).
set -eu

COMPOSE=${COMPOSE:-docker-compose -f "$(dirname "$0")/../regtest.yaml"}
REGIONS="us eu asia"
FUND_BTC=${FUND_BTC:-5}
CHANNEL_SAT=${CHANNEL_SAT:-5000000}
PUSH_SAT=${PUSH_SAT:-2000000}

btc() { $COMPOSE exec -T bitcoind bitcoin-cli -regtest -rpcuser=corridor -rpcpassword=regtest "$@"; }
lnd() { node=$1; shift; $COMPOSE exec -T "lnd-$node" lncli --lnddir=/lnd --network=regtest "$@"; }
cln() { node=$1; shift; $COMPOSE exec -T "cln-$node" lightning-cli --network=regtest "$@"; }
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
mine() { btc generatetoaddress "$1" "$(btc getnewaddress)" > /dev/null; }

echo "waiting for the nodes' RPC"
for region in $REGIONS; do
    until lnd "$region" getinfo > /dev/null 2>&1; do sleep 2; done
    until cln "$region" getinfo > /dev/null 2>&1; do sleep 2; done
done

btc createwallet corridor > /dev/null 2>&1 || btc loadwallet corridor > /dev/null 2>&1 || true
mine 101   # coinbase outputs mature after 100 blocks

echo "funding the nodes"
for region in $REGIONS; do
    btc sendtoaddress "$(lnd "$region" newaddress p2tr | json "['address']")" "$FUND_BTC" > /dev/null
    btc sendtoaddress "$(cln "$region" newaddr | json "['bech32']")" "$FUND_BTC" > /dev/null
done
mine 6
for region in $REGIONS; do   # wait until both wallets see their coins
    until [ "$(lnd "$region" walletbalance | json "['confirmed_balance']")" != "0" ]; do sleep 1; done
    until [ "$(cln "$region" listfunds | json "['outputs'].__len__()")" != "0" ]; do sleep 1; done
done

lnd_id() { lnd "$1" getinfo | json "['identity_pubkey']"; }
cln_id() { cln "$1" getinfo | json "['id']"; }

open_lnd() {  # open_lnd FROM_REGION PEER_PUBKEY PEER_HOST
    if lnd "$1" listchannels | json "['channels']" | grep -q "$2"; then return; fi
    lnd "$1" connect "$2@$3:9735" > /dev/null 2>&1 || true
    lnd "$1" openchannel --node_key "$2" --local_amt "$CHANNEL_SAT" --push_amt "$PUSH_SAT" > /dev/null
}
open_cln() {  # open_cln FROM_REGION PEER_PUBKEY PEER_HOST
    if cln "$1" listpeerchannels "$2" | json "['channels'].__len__()" | grep -qv '^0$'; then return; fi
    cln "$1" connect "$2@$3:9735" > /dev/null
    cln "$1" fundchannel "$2" "$CHANNEL_SAT" > /dev/null
}

echo "opening the channels"
set -- us eu asia us
while [ $# -gt 1 ]; do
    open_lnd "$1" "$(lnd_id "$2")" "lnd-$2"      # the LND ring
    shift
done
for region in $REGIONS; do
    open_lnd "$region" "$(cln_id "$region")" "cln-$region"
    open_cln "$region" "$(lnd_id "$region")" "lnd-$region"
done
mine 6
echo "channels open; confirm with: $COMPOSE exec lnd-us lncli --lnddir=/lnd --network=regtest listchannels"
