"""``python -m runtime``: start the daemon.

The composition root, and so the one module of ``runtime`` allowed to import the layers above
it. Without ``--config`` it runs the built-in simulated bench (every instrument's wire-protocol
simulator on a pseudo-terminal, driven by the real drivers), so it runs on any machine. The
gRPC edge starts after the devices, on 127.0.0.1:50051 unless ``--listen`` or the config's
``[edge] listen`` says otherwise, and logs where it listens. SIGINT or SIGTERM stops the edge,
then every actor in reverse start order, leaving the hardware safe, and exits with status 0.
A bad config exits with status 2 and a message naming file, key and reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import sys

import trio

from actors.capabilities import Describe
from actors.edge import EDGE_NAME, Edge, EdgeAddress, check_edge_config, probe_listen
from runtime import ActorError, BenchError, UnhandledMessage
from runtime.config import BenchConfig, ConfigError, load_config, parse_listen
from runtime.gc_policy import freeze_startup_heap
from runtime.logs import configure_logging
from supervisors import ActorSpec
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
        "--listen",
        metavar="HOST:PORT",
        default=os.environ.get("BENCHD_LISTEN") or None,
        help="where the gRPC edge listens (default: $BENCHD_LISTEN, else the config's [edge]"
        " listen, else 127.0.0.1:50051); another address than loopback needs [edge]"
        " tokens_file",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines for a terminal, or one JSON object per line for a log shipper",
    )
    args = parser.parse_args(argv)
    if not args.duration > 0:
        parser.error(f"--duration must be a positive number of seconds, got {args.duration}")
    if args.listen is not None:
        try:
            args.listen = parse_listen(args.listen)
        except ValueError as exc:
            parser.error(f"--listen: {exc}")
    return args


def with_listen(config: BenchConfig, listen: tuple[str, int] | None) -> BenchConfig:
    if listen is None:
        return config
    host, port = listen
    return dataclasses.replace(
        config, edge=dataclasses.replace(config.edge, host=host, port=port, source="--listen")
    )


async def serve(
    config_path: str | None, duration: float, listen: tuple[str, int] | None = None
) -> None:
    config = load_config(config_path) if config_path else simulated_bench_config()
    config = with_listen(config, listen)
    check_edge_config(config.edge)  # a bad tokens file or TLS key: exit 2 before anything starts
    probe_listen(config.edge)  # so is a port in use
    logger.info("bench %r from %s: %d devices", config.name, config.source, len(config.devices))
    edge = ActorSpec(EDGE_NAME, lambda: Edge(config.edge, bench=config.name))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_bench(config, services=[edge]) as bench:
            await log_devices(bench)
            frozen = freeze_startup_heap()
            logger.debug("garbage collector: %d start-up objects frozen", frozen)
            address = await bench.system.ref(EDGE_NAME).ask(EdgeAddress())
            logger.info("benchd serving gRPC on %s", address)
            logger.info("runs are written to %s", config.storage.directory)
            with trio.move_on_after(duration):
                async for signum in signals:
                    logger.info("received %s: stopping", signal.Signals(signum).name)
                    break
            logger.info("stopping actors in reverse start order")
    logger.info("benchd stopped cleanly")


async def log_devices(bench: Bench) -> None:
    states = {n: s for n, s in bench.device_states().items() if n != EDGE_NAME}
    for name, state in states.items():
        identity = ""
        if state == "ready":
            try:
                identity = (await bench.system.ref(name).ask(Describe(), timeout=5.0)).identity
            except ActorError as exc:  # a service (recorder, ring) is not a device: no identity
                unhandled = isinstance(exc.cause, UnhandledMessage)
                identity = "" if unhandled else f"(no description: {exc.cause})"
            except BenchError as exc:
                identity = f"(no description: {exc})"
        logger.info("%s: %s %s", name, state, identity)
    ready = sum(state == "ready" for state in states.values())
    logger.info("benchd ready: %d of %d actors up", ready, len(states))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        trio.run(serve, args.config, args.duration, args.listen)
    except ConfigError as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
