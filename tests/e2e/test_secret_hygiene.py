"""Secret hygiene, proven (issue "Trust boundary"): no secret the stack holds shows up anywhere
but in the file kept for it.

One run of `corridor up` with the simulator, logging at debug, driven through the paths that
touch secrets: an invoice payment that settles (LND macaroon, TLS, signed work order), a keysend
(the keysend secret), a policy rejection, an intent approval and a policy change (operators'
credentials), every read command, and refused commands. Then every secret in the state dir
(``tests/e2e/secrets_inventory.py`` says where each lives) is looked for, in all its encodings,
in the stack's log, every CLI output, the replayed event log, every file under the state dir
(the JetStream store, PostgreSQL's data and log, nats-server's log included) but the files
allowed to hold it, ``endpoints.json`` as it was while running, and the argv and environment
of every process of the stack (other users read those with ps). The files allowed to hold a
secret must be mode 0600. A finding names the secret by fingerprint, never by value.

The test can fail: each category must hold at least one secret, and a planted copy of every
form of every secret must be found by the same grep.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.domain.intent.transitions import TERMINAL_STATUSES
from tests.e2e import secrets_inventory as inventory
from tests.e2e.test_cli import CORRIDOR, REPO, _env

READY_DEADLINE_S = 90.0
TERMINAL_DEADLINE_S = 60.0
STOP_DEADLINE_S = 60.0
INVOICE_MSAT = 150_000
KEYSEND_MSAT = 21_000
# Above the `trusted` level's review_max_msat (10,000 sat): tier approval for caller `local`.
APPROVAL_MSAT = 20_000_000
TERMINAL = TERMINAL_STATUSES


def _debug_env() -> dict[str, str]:
    env = _env()
    env["CORRIDOR_LOG_LEVEL"] = "debug"
    return env


@dataclass
class Transcript:
    """Every CLI run's argv, exit code, stdout and stderr: all of it is grepped."""

    state_dir: Path
    runs: list[tuple[str, subprocess.CompletedProcess[str]]] = field(default_factory=list)

    @property
    def sd(self) -> list[str]:
        return ["--state-dir", str(self.state_dir)]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*CORRIDOR, *args], capture_output=True, text=True, input=stdin, timeout=60,
            cwd=REPO, env=_debug_env(),
        )  # fmt: skip
        self.runs.append((" ".join(args[:2]), done))
        return done

    def json(self, *args: str, codes: tuple[int, ...] = (0,)) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode in codes, (args, done.returncode, done.stderr[-2000:])
        return json.loads(done.stdout)

    def wait_terminal(self, intent_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + TERMINAL_DEADLINE_S
        while True:
            view: dict[str, Any] = self.json("get", *self.sd, intent_id, codes=(0, 1))
            if view.get("state") in TERMINAL:
                return view
            assert time.monotonic() < deadline, f"{intent_id} still {view.get('state')}"
            time.sleep(0.1)  # a poll interval against a deadline, not synchronisation

    def wait_state(self, intent_id: str, state: str) -> dict[str, Any]:
        deadline = time.monotonic() + TERMINAL_DEADLINE_S
        while True:
            view: dict[str, Any] = self.json("get", *self.sd, intent_id, codes=(0, 1))
            if view.get("state") == state:
                return view
            assert view.get("state") not in TERMINAL, view
            assert time.monotonic() < deadline, f"{intent_id} still {view.get('state')}"
            time.sleep(0.1)  # a poll interval against a deadline, not synchronisation


def _start(state_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], Any]:
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*CORRIDOR, "up", "--state-dir", str(state_dir)],
        cwd=REPO, env=_debug_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    endpoints = state_dir / "endpoints.json"
    deadline = time.monotonic() + READY_DEADLINE_S
    while True:
        try:
            if "nodes" in json.loads(endpoints.read_text()):
                return proc, log
        except (OSError, ValueError):
            pass  # not written yet, or being replaced
        if proc.poll() is not None:
            log.close()
            raise AssertionError(f"corridor up died: {log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise AssertionError("the stack with the simulated network did not come up")
        time.sleep(0.05)  # a poll interval against a deadline, not synchronisation


def _drive(t: Transcript, replay_out: Path) -> None:
    sd = t.sd
    nodes = t.json("sim", "nodes", *sd)
    merchant = next(n for n in nodes if n["role"] == "merchant" and n["region"] == "eu")

    def invoice(amount_msat: int) -> str:
        made = t.json("sim", "invoice", *sd, "--node", merchant["name"],
                      "--amount-msat", str(amount_msat))  # fmt: skip
        return str(made["payment_request"])

    # 1. An invoice payment that settles: an LND node behind its macaroon and TLS pays it.
    paid = t.json("submit", *sd, "--idempotency-key", "hygiene-invoice", "--amount-msat",
                  str(INVOICE_MSAT), "--payment-request", invoice(INVOICE_MSAT))  # fmt: skip
    assert paid["ok"] and paid["state"] == "dispatched", paid
    assert t.wait_terminal(paid["intent_id"])["state"] == "settled"

    # 2. A keysend: the preimage comes from the executors' keysend secret.
    keysend = t.json("submit", *sd, "--idempotency-key", "hygiene-keysend", "--amount-msat",
                     str(KEYSEND_MSAT), "--destination", merchant["pubkey"])  # fmt: skip
    assert keysend["ok"], keysend
    assert t.wait_terminal(keysend["intent_id"])["state"] == "settled"

    # 3. A policy rejection: a fee budget above the cap.
    over = t.json("submit", *sd, "--idempotency-key", "hygiene-over-cap",
                  "--amount-msat", str(INVOICE_MSAT), "--payment-request", invoice(INVOICE_MSAT),
                  "--max-fee-msat", "100000000", codes=(0, 1))  # fmt: skip
    assert over["state"] == "rejected" and over["reason"] == "fee_cap_exceeded", over

    # 4. An approval: tier approval, released by an operator.
    big = t.json("submit", *sd, "--idempotency-key", "hygiene-approval", "--amount-msat",
                 str(APPROVAL_MSAT), "--payment-request", invoice(APPROVAL_MSAT))  # fmt: skip
    assert big["ok"], big
    t.wait_state(big["intent_id"], "awaiting_approval")
    approved = t.json("approve", big["intent_id"], *sd, "--operator-id", "operator-1")
    assert approved["ok"], approved
    assert t.wait_terminal(big["intent_id"])["state"] == "settled"

    # 5. Refused commands. The local caller's credential naming another caller in the payload:
    # the engine refuses the mismatch. A caller's credential approving: the server refuses it.
    local = str(t.state_dir / "auth" / "caller-local.nk")
    mismatch = t.json("submit", *sd, "--creds", local, "--caller-id", "mallory",
                      "--idempotency-key", "hygiene-mismatch", "--amount-msat", "21000",
                      "--destination", merchant["pubkey"], "--max-fee-msat", "10000",
                      codes=(1,))  # fmt: skip
    assert mismatch["error"]["code"] == "identity_mismatch", mismatch
    not_operator = t.run("approve", big["intent_id"], *sd, "--creds", local,
                         "--operator-id", "local")  # fmt: skip
    assert not_operator.returncode == 2, not_operator.stderr[-2000:]
    assert "permissions violation" in not_operator.stderr
    unknown = t.run("submit", *sd, "--file", "-", "--json",
                    stdin=json.dumps({"type": "SubmitPaymentIntent", "version": 7}))  # fmt: skip
    assert unknown.returncode == 1, unknown.stderr[-2000:]
    assert json.loads(unknown.stdout)["error"]["code"] == "unknown_version"

    # 6. A policy change: proposed by one operator, approved by another.
    document = t.json("policy", "show", *sd, "--document")
    document["version"] = 2
    document["fees"]["floor_msat"] = 20_000
    proposal = t.state_dir.parent / "policy-v2.json"
    proposal.write_text(json.dumps(document))
    proposed = t.run("policy", "propose", str(proposal), *sd, "--operator-id", "operator-1")
    assert proposed.returncode == 0, proposed.stderr[-2000:]
    enacted = t.run("policy", "approve", "2", *sd, "--operator-id", "operator-2")
    assert enacted.returncode == 0, enacted.stderr[-2000:]

    # 7. Every read command, in every output form.
    assert t.json("policy", "show", *sd)["pending"] == []
    t.run("policy", "show", *sd)
    t.json("get", *sd, paid["intent_id"])
    t.run("get", *sd, keysend["intent_id"])
    t.json("corridors", *sd)
    t.run("exceptions", *sd)
    t.json("exceptions", *sd)
    creds = t.json("creds", "list", *sd)
    assert {c["id"] for c in creds} >= {"local", "operator-1", "engine-1"}
    t.run("creds", "list", *sd)
    replayed = t.run("replay", *sd, "--verify", "--out", str(replay_out))
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    events = replay_out.read_text().splitlines()
    assert len(events) >= 10, events
    watched = t.run("watch", *sd, "--all", "--from-start", "--count", str(len(events)))
    assert watched.returncode == 0, watched.stderr[-2000:]
    assert len(watched.stdout.splitlines()) == len(events)
    assert t.run("replay", *sd).returncode == 0  # to stdout, as an auditor would read it
    _drive_http(t, paid["intent_id"])


def _drive_http(t: Transcript, intent_id: str) -> None:
    """The HTTP API (ADR 0171): a read, a refused body, a bad key, an operator's action; the
    keys must not show up in any answer or the stack's log."""
    import httpx

    url = json.loads((t.state_dir / "endpoints.json").read_text())["http_url"]
    auth = t.state_dir / "auth"
    caller = {"Authorization": f"Bearer {(auth / 'caller-local.nk.http').read_text().strip()}"}
    operator = {
        "Authorization": f"Bearer {(auth / 'operator-operator-1.nk.http').read_text().strip()}"
    }
    answers = [
        httpx.get(f"{url}/v1/intents/{intent_id}", headers=caller),
        httpx.get(f"{url}/v1/intents/{intent_id}/timeline", headers=operator),
        httpx.post(f"{url}/v1/intents", headers={**caller, "Idempotency-Key": "h"},
                   json={"corridor": "us-eu", "amount_msat": "x", "max_fee_msat": 1}),
        httpx.get(f"{url}/v1/intents/{intent_id}", headers={"Authorization": "Bearer ck_nope"}),
        httpx.get(f"{url}/v1/exceptions", headers=operator),
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200, 400, 401, 200], answers
    for i, answer in enumerate(answers):
        done = subprocess.CompletedProcess(["http", str(i)], 0, answer.text, str(answer.headers))
        t.runs.append((f"http answer {i}", done))


def _stop(proc: subprocess.Popen[bytes], log: Any) -> None:
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=STOP_DEADLINE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _outside_homes(state_dir: Path) -> list[Path]:
    """Where PostgreSQL keeps its cluster and log when root runs it outside the state dir
    (services/devstack/postgres.py ``CLUSTER_LINK``)."""
    from services.devstack.postgres import CLUSTER_LINK

    homes = []
    for link in state_dir.rglob(CLUSTER_LINK):
        home = Path(link.read_text().strip())
        if home.is_dir():
            homes.append(home)
    return homes


def _process_tree(root: int) -> dict[int, tuple[bytes, bytes]]:
    """Each process of the stack (``root`` and its descendants): its argv and environment."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    tree = {root}
    grew = True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        grew = bool(found)
        tree |= found
    out = {}
    for pid in sorted(tree):
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            environ = (Path("/proc") / str(pid) / "environ").read_bytes().replace(b"\0", b"\n")
        except OSError:
            continue
        out[pid] = (argv, environ)
    return out


def _planted_check(inv: inventory.Inventory) -> None:
    """The grep finds each category's secret in each of its forms: a clean result means
    something, not a matcher that cannot match."""
    for secret in inv.secrets:
        for form, needle in enumerate(secret.needles):
            text = b'2026-01-01 a log line\n{"oops": "' + needle + b'"}\n'
            found = {f.secret.fingerprint for f in inventory.search_text(inv, "planted", text)}
            assert secret.fingerprint in found, f"the grep misses {secret} in form #{form}"


def test_no_secret_leaves_its_file(tmp_path: Path) -> None:
    started = time.monotonic()
    state_dir = tmp_path / "state"
    up_log = tmp_path / "corridor-up.log"  # stdout and stderr of `corridor up`, at debug
    replay_out = tmp_path / "replay.jsonl"
    proc, log = _start(state_dir, up_log)
    transcript = Transcript(state_dir)
    try:
        # The LND credentials are written afresh at each start: read them while they serve.
        running = inventory.collect(state_dir)
        # Removed at a graceful stop (its entries are this process's, ADR 0020): kept to grep.
        endpoints = (state_dir / "endpoints.json").read_bytes()
        # A file allowed to hold a secret is its owner's alone (0600, as each writer makes it).
        modes = {rel: (state_dir / rel).stat().st_mode & 0o777 for rel, _ in running.allowed}
        assert all(mode & 0o077 == 0 for mode in modes.values()), {
            rel: oct(mode) for rel, mode in modes.items() if mode & 0o077
        }
        _drive(transcript, replay_out)
        # Argv and environment are readable by other users (ps, /proc): no secret goes there.
        processes = _process_tree(proc.pid)
    finally:
        _stop(proc, log)
    inv = inventory.collect(state_dir)
    for secret in running.secrets:
        inv.add(secret)
    inv.allowed |= running.allowed

    # A test that finds no secret to look for proves nothing.
    counts = inv.by_category()
    missing = [c for c in inventory.REQUIRED if not counts.get(c)]
    assert not missing, f"no secret collected for {missing}: {counts}"
    assert counts[inventory.SEEDS] >= 6  # engine, caller, two operators, auditor, executors
    assert counts[inventory.PG_PASSWORD] >= 2  # the superuser's and the engine role's
    assert all(s.needles for s in inv.secrets)
    _planted_check(inv)

    leaks: list[inventory.Leak] = []
    for name, done in transcript.runs:
        for stream, text in (("stdout", done.stdout), ("stderr", done.stderr)):
            leaks += inventory.search_text(inv, f"`corridor {name}` {stream}", text)
    homes = _outside_homes(state_dir)
    searched = list(inventory.files_under(up_log, replay_out, state_dir, *homes))
    for path in searched:
        leaks += inventory.search_file(inv, path)
    leaks += inventory.search_snapshot(inv, "endpoints.json", endpoints)
    for pid, (argv, environ) in processes.items():
        leaks += inventory.search_text(inv, f"argv of pid {pid} ({argv[:60]!r})", argv)
        leaks += inventory.search_text(inv, f"environment of pid {pid}", environ)

    # The searched set is what this test claims it is.
    names = {p.name for p in searched}
    assert {"nats.log", "postgres.log", "passwords.json", "engine-signing.key"} <= names, names
    assert b"database_url" in endpoints  # the snapshot is of a running stack's file
    assert any("/js/" in str(p) for p in searched), "the JetStream store was not searched"
    assert any(p.name == "PG_VERSION" for p in searched), "PostgreSQL's data was not searched"
    assert len(transcript.runs) >= 20
    argvs = b" ".join(argv for argv, _ in processes.values())
    assert b"nats-server" in argvs and b"postgres" in argvs, argvs

    elapsed = time.monotonic() - started
    summary = (
        f"{len(inv.secrets)} secrets {counts}, {len(searched)} files and "
        f"{len(transcript.runs)} CLI runs searched in {elapsed:.0f} s"
    )
    assert not leaks, summary + ":\n" + "\n".join(sorted({str(leak) for leak in leaks}))
    print(summary)
