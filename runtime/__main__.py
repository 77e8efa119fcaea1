"""``python -m runtime``: start the daemon.

The composition root, and so the one module of ``runtime`` allowed to import the layers above
it. Without ``--config`` it runs the built-in simulated bench (every instrument's wire-protocol
simulator on a pseudo-terminal, driven by the real drivers), so it runs on any machine.
SIGINT or SIGTERM stops every actor in reverse start order, leaving the hardware safe, and
exits with status 0. A bad config exits with status 2 and a message naming file, key and reason.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys

import trio

from actors.capabilities import Describe
from runtime import BenchError
from runtime.config import ConfigError, load_config
from supervisors.bench import Bench, open_bench, simulated_bench_config

logger = logging.getLogger("benchd")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=math.inf,
        metavar="SECONDS",
        help="stop by itself after this long (default: run until SIGINT/SIGTERM)",
    )
    parser.add_argument(
        "--config", metavar="BENCH.toml", help="bench description (default: the simulated bench)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    args = parser.parse_args(argv)
    if not args.duration > 0:
        parser.error(f"--duration must be a positive number of seconds, got {args.duration}")
    return args


async def serve(config_path: str | None, duration: float) -> None:
    config = load_config(config_path) if config_path else simulated_bench_config()
    logger.info("bench %r from %s: %d devices", config.name, config.source, len(config.devices))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_bench(config) as bench:
            await log_devices(bench)
            with trio.move_on_after(duration):
                async for signum in signals:
                    logger.info("received %s: stopping", signal.Signals(signum).name)
                    break
            logger.info("stopping actors in reverse start order")
    logger.info("benchd stopped cleanly")


async def log_devices(bench: Bench) -> None:
    states = bench.device_states()
    for name, state in states.items():
        identity = ""
        if state == "ready":
            try:
                identity = (await bench.system.ref(name).ask(Describe(), timeout=5.0)).identity
            except BenchError as exc:
                identity = f"(no description: {exc})"
        logger.info("%s: %s %s", name, state, identity)
    ready = sum(state == "ready" for state in states.values())
    logger.info("benchd ready: %d of %d actors up", ready, len(states))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        trio.run(serve, args.config, args.duration)
    except ConfigError as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
