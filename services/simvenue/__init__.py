"""Simulated venue: Binance, Polymarket (market/user sockets, Gamma, CLOB REST) and the RTDS price
feed on one local port, over a seeded market or a replayed capture, with injectable faults.

`main(argv)` is the entry point of `python -m services.simvenue` and `polyedge sim`; the market
generator itself is `services.simvenue.market.SimMarket`. Endpoints: see README.md in this package.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.config import Settings

FAULT_HELP = (
    "NAME[:key=value,...], e.g. stall:channel=market,seconds=5,after=30 "
    "(repeatable; keys: channel, count, seconds, after)"
)


def parse_fault(spec: str) -> dict:
    from services.simvenue.venue import FAULTS

    name, _, rest = spec.partition(":")
    if name not in FAULTS:
        raise argparse.ArgumentTypeError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    out: dict = {"name": name}
    for part in filter(None, rest.split(",")):
        k, eq, val = part.partition("=")
        if not eq or k not in ("channel", "count", "seconds", "after"):
            raise argparse.ArgumentTypeError(f"bad fault option {part!r} in {spec!r}")
        try:
            out[k] = val if k == "channel" else (int(val) if k == "count" else float(val))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad number in {part!r}") from exc
    return out


def _settings() -> Settings:
    """The runtime settings (`.env`, then the environment) from the one loader; a bad value
    exits 2 naming it, an unknown key is reported on stderr."""
    from common.config import ConfigError, load_settings

    def warn(message: str) -> None:
        print(f"polyedge simvenue: warning: {message}", file=sys.stderr, flush=True)

    try:
        return load_settings(warn=warn)
    except ConfigError as e:
        print(f"polyedge simvenue: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _config_markets(settings: Settings, window_s: int) -> tuple[list, object]:
    """The series the strategy config names (`markets`, disabled ones too: the venue lists
    them, the tree does not trade them) and those of `SIM_MARKETS`, each window scaled so that 5m lasts `window_s`, and
    a function giving them again after an edit of either config file (hot reload). A bad
    config exits 2 naming the entry."""
    from common.config import ConfigError, market_specs, scaled_window_s

    files = settings.strategy_config_files()

    extra = [
        {"asset": key.rsplit("-", 1)[0], "window": key.rsplit("-", 1)[-1]}
        for key in settings.sim.markets
    ]
    try:  # SIM_MARKETS: checked like the config's entries, named in the error
        extra_specs = market_specs({"markets": extra}) if extra else []
    except ConfigError as e:
        print(f"polyedge simvenue: SIM_MARKETS: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None

    def load() -> list[tuple[str, str, int]]:
        specs = list(market_specs(files.load().config))
        keys = {m.key for m in specs}
        specs += [m for m in extra_specs if m.key not in keys]
        return [(m.asset, m.window, scaled_window_s(m, window_s)) for m in specs]

    try:
        current = load()
    except ConfigError as e:
        print(f"polyedge simvenue: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if not current:  # a config with no markets still gets a venue to connect to
        current = [("btc", "5m", window_s)]

    def source() -> list[tuple[str, str, int]]:
        nonlocal current
        if files.changed():
            current = load() or current
        return current

    return current, source


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polyedge sim", description="Run the simulated venue.")
    p.add_argument(
        "--port", type=int, default=None, help="port (env SIM_PORT, default 8765; 0 = any free)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--seed", type=int, default=None, help="market seed (env SIM_SEED, default 1)")
    p.add_argument(
        "--window-seconds",
        type=int,
        default=None,
        help="window length (env SIM_WINDOW_SECONDS, default 300)",
    )
    p.add_argument("--replay", metavar="CAPTURE_PATH", help="play back a capture instead")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    p.add_argument("--fault", action="append", type=parse_fault, default=[], help=FAULT_HELP)
    p.add_argument(
        "--book-ticker-hz",
        type=float,
        default=None,
        help="Binance bookTicker rate (env SIM_BOOK_TICKER_HZ, default 100/s)",
    )
    p.add_argument(
        "--clob-hz",
        type=float,
        default=None,
        help="Polymarket book updates per second, both tokens (env SIM_CLOB_HZ, default 60)",
    )
    p.add_argument("--mine-seconds", type=float, default=2.0, help="MATCHED -> MINED delay")
    p.add_argument("--confirm-seconds", type=float, default=6.0, help="MATCHED -> CONFIRMED delay")
    p.add_argument("--balance", type=float, default=1000.0, help="starting pUSD per account")
    p.add_argument("--ping-interval", type=float, default=20.0, help="server websocket pings (s)")
    p.add_argument(
        "--only-if-sim",
        action="store_true",
        help="exit 0 at once unless POLYEDGE_VENUE=sim (for supervisord)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = _settings()
    if args.only_if_sim and settings.venue != "sim":
        print(f"simvenue: POLYEDGE_VENUE={settings.venue}, not sim; not starting", flush=True)
        return 0
    sim = settings.sim  # SIM_*: the command line wins over them
    port = args.port if args.port is not None else sim.port
    seed = args.seed if args.seed is not None else sim.seed
    window = args.window_seconds if args.window_seconds is not None else sim.window_seconds
    if not 0 <= port <= 65535:
        parser.error(f"--port {port} out of range")
    if window < 2:
        parser.error("--window-seconds must be >= 2")
    if args.speed <= 0:
        parser.error("--speed must be > 0")
    if args.replay and not Path(args.replay).is_file():
        parser.error(f"--replay: no such file {args.replay}")
    if args.book_ticker_hz is None:
        args.book_ticker_hz = sim.book_ticker_hz
    if args.clob_hz is None:
        args.clob_hz = sim.clob_hz
    if args.book_ticker_hz < 0:
        parser.error("--book-ticker-hz must be >= 0")
    if args.clob_hz < 0:
        parser.error("--clob-hz must be >= 0")

    import uvicorn

    from services.simvenue.server import SimOptions, Venue, build_app

    markets, markets_source = _config_markets(settings, window)

    # ended windows' resolutions, so a restarted venue still answers for them (Gamma keeps
    # closed markets); per seed, as the market ids are. Replay does not advance the seeded
    # market: nothing to keep.
    archive = None if args.replay else settings.data_dir / "sim" / f"windows-seed{seed}.jsonl"
    lock_fd = None
    if archive is not None:
        # one venue per windows file: a second one (a standalone `polyedge sim` on a running
        # tree's POLYEDGE_DATA_DIR) would write its own outcomes for the same windows into it
        from common.service import EXIT_LOCKED, acquire_lock, lock_holders

        name = f"simvenue-seed{seed}"
        held = dict(lock_holders(archive.parent))
        if name in held:
            print(
                f"simvenue: another simulated venue (pid {held[name]}) runs seed {seed} on data "
                f"directory {settings.data_dir} and keeps its windows in {archive}; a second one "
                "would write its own outcomes into that file. Stop it, or use another "
                "POLYEDGE_DATA_DIR or --seed",
                file=sys.stderr,
            )
            return EXIT_LOCKED
        lock_fd = acquire_lock(archive.parent, name)  # held until the process exits

    opts = SimOptions(
        host=args.host,
        port=port,
        seed=seed,
        window_seconds=window,
        book_ticker_hz=args.book_ticker_hz,
        clob_update_hz=args.clob_hz,
        replay=args.replay,
        speed=args.speed,
        faults=args.fault,
        mine_seconds=args.mine_seconds,
        confirm_seconds=args.confirm_seconds,
        balance_usd=args.balance,
        ping_interval=args.ping_interval,
        markets=markets,
        markets_source=markets_source,
        archive_path=archive,
    )
    try:  # before the socket: a capture that is not one exits 2 naming the file
        venue = Venue(opts)
    except (ValueError, OSError) as exc:
        print(f"polyedge sim: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, port))
        sock.listen(1024)
    except OSError as exc:
        print(f"simvenue: cannot listen on {args.host}:{port}: {exc}", file=sys.stderr)
        return 1
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(venue),
        log_level="warning",
        lifespan="on",
        ws_ping_interval=args.ping_interval or None,
        ws_ping_timeout=max(args.ping_interval, 20.0) or None,
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            print(f"simvenue listening on http://{args.host}:{bound_port}", flush=True)
        from common.service import ParentWatch

        watch = ParentWatch()  # supervisord gone (kill -9): stop, as the services do
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            if not task.done() and watch.orphaned():
                print(
                    f"simvenue: supervisor (pid {watch.parent}) is gone; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                server.should_exit = True
                await task
        await task

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    if lock_fd is not None:
        os.close(lock_fd)
    return 0
