"""Submit a payment intent to Corridor's HTTP API, as an integrator's program would.

Only the standard library. Run it against `corridor up` (its `http_url` is in endpoints.json;
the API key is the `.http` file `corridor creds add --out FILE` writes beside FILE):

    python examples/submit_over_http.py --url http://127.0.0.1:PORT --key-file acme.nk.http \
        --idempotency-key order-1 --amount-msat 50000 --payment-request lnbcrt...

Prints the HTTP status and Corridor's reply. 201: accepted; 200 with `Idempotent-Replayed:
true`: the same key and body were sent before (the original reply); 409: the same key with
another body. Exits 0 for 200/201, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path


def submit(args: argparse.Namespace) -> tuple[int, dict[str, object], bool]:
    body = {"corridor": args.corridor, "amount_msat": args.amount_msat,
            "max_fee_msat": args.max_fee_msat}  # fmt: skip
    if args.payment_request:
        body["payment_request"] = args.payment_request
    else:
        body["destination"] = args.destination
    request = urllib.request.Request(
        args.url.rstrip("/") + "/v1/intents",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": "Bearer " + Path(args.key_file).read_text().strip(),
            "Idempotency-Key": args.idempotency_key,
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            return response.status, json.loads(response.read()), replayed
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the API's base URL (http_url)")
    parser.add_argument("--key-file", required=True, help="the API key file (FILE.http)")
    parser.add_argument("--idempotency-key", required=True)
    parser.add_argument("--corridor", default="us-eu")
    parser.add_argument("--amount-msat", type=int, required=True)
    parser.add_argument("--max-fee-msat", type=int, default=10_000)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--payment-request", help="a BOLT 11 invoice")
    target.add_argument("--destination", help="a node pubkey (keysend)")
    status, reply, replayed = submit(parser.parse_args())
    print(json.dumps({"status": status, "replayed": replayed, "reply": reply}))
    return 0 if status in (200, 201) else 1


if __name__ == "__main__":
    sys.exit(main())
