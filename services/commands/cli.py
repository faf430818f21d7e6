"""The `polyedge` command: tap the bus, show the settings, run the simulated venue, benchmark,
backtest, and start, stop or look at the supervisord tree (`up`, `down`, `status`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence

import msgspec

from common import topics
from common.bus import Subscriber
from common.config import ConfigError, load_settings, settings_document, settings_markdown


def _positive_float(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {v!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return x


def _positive_int(v: str) -> int:
    try:
        x = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {v!r}") from None
    if x <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return x


# first segments of the topics the services publish (common/topics.py), for a tap that heard none
TOPIC_PREFIXES = ("md.", "sig.", "strat.", "risk.", "exec.", "sys.")


def tap(args: argparse.Namespace) -> int:
    """Print bus traffic, one JSON object a line: topic, seq, epoch, kind, then the fields."""
    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"polyedge tap: {e}", file=sys.stderr)
        return 2
    services = args.service or list(topics.PUBLISHERS)
    wanted = tuple(args.topic or [""])
    # with --topic, heartbeats too (not printed unless asked for): a timeout can then tell "the
    # system runs, nothing on that topic" from "nothing runs"
    listen = [*wanted, topics.HEARTBEAT_PREFIX] if args.topic else [""]
    sub = Subscriber([settings.bus_endpoint(s) for s in services], listen)
    heard: set[str] = set()  # services whose heartbeat came
    enc = msgspec.json.Encoder()
    out = sys.stdout.buffer
    printed = 0
    start = time.monotonic()
    deadline = start + args.timeout if args.timeout else None
    next_stats = start + 1.0
    counts: dict[str, int] = {}
    try:
        while args.count is None or printed < args.count:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = min(x for x in (deadline, next_stats if args.stats else None, now + 1.0) if x)
            item = sub.recv(timeout_ms=max(1, int((wait - now) * 1000)))
            if args.stats and time.monotonic() >= next_stats:
                _print_stats(sub, counts, time.monotonic() - start)
                next_stats += 1.0
            if item is None:
                continue
            topic, env = item
            if topic.startswith(topics.HEARTBEAT_PREFIX):
                heard.add(topic.removeprefix(topics.HEARTBEAT_PREFIX))
                if not topic.startswith(wanted):
                    continue
            counts[topic] = counts.get(topic, 0) + 1
            if args.stats:
                continue
            doc = {"topic": topic, "seq": env.seq, "epoch": env.epoch}
            doc.update(msgspec.to_builtins(env.msg))
            out.write(enc.encode(doc) + b"\n")
            out.flush()
            printed += 1
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        return 0
    finally:
        sub.close()
    if args.stats:
        _print_stats(sub, counts, time.monotonic() - start)
        return 0
    if args.count is not None and printed < args.count and args.topic and heard:
        print(
            f"polyedge tap: timed out after {args.timeout}s: no message on topic "
            f"{' or '.join(map(repr, args.topic))} ({printed} of {args.count}); the system is running "
            f"(heartbeats from {', '.join(sorted(heard))}). A topic is a prefix; topics "
            f"start with {', '.join(TOPIC_PREFIXES)} (e.g. md.btc.trade, sig.score, exec.fill)",
            file=sys.stderr,
        )
        return 1
    if args.count is not None and printed < args.count:
        print(
            f"polyedge tap: timed out after {args.timeout}s with {printed} of {args.count} "
            f"messages (is the system running? bus under {settings.run_dir})",
            file=sys.stderr,
        )
        return 1
    return 0


def show_settings(args: argparse.Namespace) -> int:
    """Print the effective runtime settings as JSON (secrets as `***`), or with `--markdown` the
    README's table of every setting (generated from the structs in common/config.py)."""
    if args.markdown:
        sys.stdout.write(settings_markdown())
        return 0
    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"polyedge settings: {e}", file=sys.stderr)
        return 2
    doc = msgspec.json.format(msgspec.json.encode(settings_document(settings)))
    sys.stdout.write(doc.decode() + "\n")
    return 0


def _print_stats(sub: Subscriber, counts: dict[str, int], elapsed: float) -> None:
    rows = {
        t: {
            "count": n,
            "rate_per_s": round(n / max(elapsed, 1e-9), 1),
            "gaps": sub.stats[t].gaps,
            "lost": sub.stats[t].lost,
            "restarts": sub.stats[t].restarts,
        }
        for t, n in sorted(counts.items())
    }
    sys.stdout.write(
        msgspec.json.encode({"elapsed_s": round(elapsed, 2), "topics": rows}).decode() + "\n"
    )
    sys.stdout.flush()


def _delegate(module: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            print(f"polyedge: {module} is not part of this build", file=sys.stderr)
            return 2
        raise
    return int(mod.main(argv) or 0)


TREE_COMMANDS = {
    "up": "start the tree (supervisord -c supervisord.conf) unless one already runs",
    "down": "shut the tree down and wait until it has exited",
    "status": "the tree's programs, or why there is no answer",
}


def main(argv: Sequence[str] | None = None) -> int:
    """`polyedge ARGS`: the exit code of the command. Output piped to a reader that stops early
    (`polyedge backtest ... | head`) ends quietly with 141 (128 + SIGPIPE, as a Unix tool
    killed by it), not a BrokenPipeError traceback (Python docs, "Note on SIGPIPE")."""
    try:
        return _main(argv)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)  # the interpreter's flush at exit must not
        os.dup2(devnull, sys.stdout.fileno())  # raise again
        return 141


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegated = {
        "sim": "services.simvenue",
        "bench": "services.commands.bench",
        "backtest": "services.commands.backtest",
        "backtest-speed": "services.commands.backtest_speed",
        "doctor": "services.commands.doctor",
        "replay-books": "services.commands.replay_books",
        "calibrate": "services.commands.calibrate",
    }
    if argv and argv[0] in delegated:
        return _delegate(delegated[argv[0]], argv[1:])
    if argv and argv[0] in TREE_COMMANDS:
        from services.commands import tree

        return tree.main(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="polyedge", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tap", help="print bus traffic as JSON lines")
    t.add_argument("--topic", action="append", help="topic prefix (repeatable)")
    t.add_argument(
        "--service",
        action="append",
        choices=topics.PUBLISHERS,
        help="only this publisher (repeatable)",
    )
    t.add_argument("--count", type=_positive_int, help="stop after N messages")
    t.add_argument("--timeout", type=_positive_float, help="stop after S seconds")
    t.add_argument("--stats", action="store_true", help="per-topic rate and gap counts")
    st = sub.add_parser(
        "settings", help="the effective runtime settings (.env, then the environment) as JSON"
    )
    st.add_argument(
        "--markdown", action="store_true", help="the README's table of every setting instead"
    )
    for name, text in (
        ("sim", "run the simulated venue"),
        ("bench", "latency benchmark (JSON)"),
        ("backtest", "deterministic backtest of a capture or the sim market"),
        ("backtest-speed", "the backtest's wall time against an older commit, side by side"),
        ("doctor", "is this setup ready for real money? (pass/fail table, --json)"),
        ("replay-books", "real recorded CLOB frames through ingest's parsers (errors, cost)"),
        ("calibrate", "score the model, the market and their blend on real outcomes (--fit)"),
        *TREE_COMMANDS.items(),
    ):
        sub.add_parser(name, help=text, add_help=False)
    args = parser.parse_args(argv)
    return show_settings(args) if args.cmd == "settings" else tap(args)


if __name__ == "__main__":
    raise SystemExit(main())
