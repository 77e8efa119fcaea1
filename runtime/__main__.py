"""``python -m runtime``: start the daemon.

The composition root, and so the one module of ``runtime`` allowed to import the layers above
it. Until the instrument drivers land it runs a demo tree (a simulated rotation stage and a
sweeper) and says so in its log. SIGINT or SIGTERM stops every actor in reverse start order,
leaving the hardware safe, and exits with status 0.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys

import trio

from supervisors import open_actor_system
from supervisors.demo_tree import demo_tree

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
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    args = parser.parse_args(argv)
    if not args.duration > 0:
        parser.error(f"--duration must be a positive number of seconds, got {args.duration}")
    return args


async def serve(duration: float) -> None:
    tree = demo_tree()
    logger.info(
        "no instrument drivers yet: running the demo tree %r (%s)",
        tree.name,
        ", ".join(child.name for child in tree.children),
    )
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_actor_system(tree) as system:
            for stats in system.statistics():
                logger.info("%s is %s", stats.name, stats.state)
            logger.info("benchd ready with %d actors", len(system.names()))
            with trio.move_on_after(duration):
                async for signum in signals:
                    logger.info("received %s: stopping", signal.Signals(signum).name)
                    break
            logger.info("stopping actors in reverse start order")
    logger.info("benchd stopped cleanly")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    trio.run(serve, args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
