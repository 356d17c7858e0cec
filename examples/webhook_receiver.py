"""Receive Corridor's settlement webhooks: verify each signature, dedupe by webhook id.

Needs only the `standardwebhooks` package (and the standard library). Register the URL first:
`corridor webhooks add --url http://HOST:PORT/hooks --events IntentSettled,IntentFailed`, which
prints the endpoint's secret once; give it here with `--secret-file`. This program:

- verifies every request with `standardwebhooks.Webhook(secret).verify(body, headers)`: the
  signature over `webhook-id`, `webhook-timestamp` and the raw body, and a timestamp within five
  minutes (a replayed request is refused with 400);
- remembers the webhook ids it accepted in `--state FILE` (one per line), and answers a repeat
  with 200 without handling it again: delivery is at least once;
- prints one JSON line per new event and stops after `--count N` (or runs until Ctrl-C).

Answer 2xx quickly; Corridor retries anything else with back-off, and 410 disables the endpoint.
After an outage longer than the retry period, catch up with `corridor webhooks history`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

BODY_BYTES_MAX = 1024 * 1024  # settlement payloads are a few KiB


def serve(args: argparse.Namespace) -> int:
    secret_file = Path(args.secret_file)
    state = Path(args.state)
    seen = set(state.read_text().split()) if state.exists() else set()
    lock = threading.Lock()
    done = threading.Event()
    printed = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            if length > BODY_BYTES_MAX:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            try:
                # Read per request: the secret may be rotated (or, in the test, written late).
                webhook = Webhook(secret_file.read_text().strip())
                payload = webhook.verify(body, dict(self.headers.items()))
            except WebhookVerificationError:
                self.send_response(400)
                self.end_headers()
                return
            webhook_id = self.headers["webhook-id"]
            with lock:
                if webhook_id not in seen:
                    print(
                        json.dumps(
                            {
                                "webhook_id": webhook_id,
                                "type": payload["type"],
                                "intent_id": payload["data"]["intent_id"],
                                "position": payload["data"]["position"],
                            }
                        ),
                        flush=True,
                    )
                    seen.add(webhook_id)
                    with state.open("a") as f:  # before the 2xx: at least once
                        f.write(webhook_id + "\n")
                    printed[0] += 1
                    if args.count is not None and printed[0] >= args.count:
                        done.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(
        f"listening on http://{args.host}:{server.server_address[1]}/", file=sys.stderr, flush=True
    )
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--secret-file", required=True, help="holds the whsec_... secret")
    parser.add_argument("--state", required=True, help="where accepted webhook ids are kept")
    parser.add_argument("--count", type=int, help="stop after N new events")
    return serve(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
