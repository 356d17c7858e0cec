"""Submit a payment intent to Corridor over NATS, as an integrator's program would.

Needs only nats-py and nkeys (no Corridor code). Run it against `corridor up`:

    corridor creds add --role caller --id acme --kind service --out acme.nk --state-dir DIR
    python examples/submit_over_nats.py --nats-url nats://127.0.0.1:PORT --creds acme.nk \
        --caller-id acme --idempotency-key order-1 --amount-msat 50000 \
        --payment-request lnbcrt...

It prints Corridor's reply (JSON) and exits 0 if the intent was accepted, 1 if refused. Sending
the same idempotency key and body again returns the original reply; the same key with another
body is refused with `idempotency_mismatch`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import nats
import nkeys

SUBMIT = "corridor.api.v1.intents.submit.{caller}"


async def submit(args: argparse.Namespace) -> dict[str, object]:
    seed = Path(args.creds).read_bytes().strip()
    public_key = nkeys.from_seed(seed).public_key.decode()
    nc = await nats.connect(
        args.nats_url,
        nkeys_seed=args.creds,
        # Replies arrive under the user's own inbox: the only one its permissions allow.
        inbox_prefix=f"_INBOX.{public_key}",
        allow_reconnect=False,
    )
    try:
        body = {
            "type": "SubmitPaymentIntent",
            "version": 1,
            "idempotency_key": args.idempotency_key,
            "caller": {"id": args.caller_id, "kind": args.kind},
            "corridor": args.corridor,
            "amount_msat": args.amount_msat,
            "max_fee_msat": args.max_fee_msat,
        }
        if args.payment_request:
            body["payment_request"] = args.payment_request
        else:
            body["destination"] = args.destination
        msg = await nc.request(
            SUBMIT.format(caller=args.caller_id), json.dumps(body).encode(), timeout=10
        )
        reply: dict[str, object] = json.loads(msg.data)
        return reply
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--creds", required=True, help="the caller's nkey seed file")
    parser.add_argument("--caller-id", required=True)
    parser.add_argument("--kind", default="service", choices=["human", "agent", "service"])
    parser.add_argument("--idempotency-key", required=True)
    parser.add_argument("--corridor", default="us-eu")
    parser.add_argument("--amount-msat", type=int, required=True)
    parser.add_argument("--max-fee-msat", type=int, default=10_000)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--payment-request", help="a BOLT 11 invoice")
    target.add_argument("--destination", help="a node pubkey (keysend)")
    reply = asyncio.run(submit(parser.parse_args()))
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
