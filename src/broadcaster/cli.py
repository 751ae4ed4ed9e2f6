"""The `broadcaster` command: serve, migrate; and the operator tools of `broadcaster.tools`:
demo (the whole job in one process: broadcaster.tools.demo) and, against a running server,
`broadcasts list`, `broadcasts watch` and `channels sync` (broadcaster.tools.console).

The server's modules are imported only for the commands that run it, so the operator commands
start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from broadcaster import logs
from broadcaster.tools import console, demo

if TYPE_CHECKING:
    from broadcaster.config import Config

log = logging.getLogger("broadcaster")


async def _serve(config: Config) -> None:
    from broadcaster.app import App, prepare_schema

    app = App.build(config)
    try:
        prepare_schema(app.db)
        grpc_server, http = await app.start()
        # What start-up made (modules, descriptors, the schema, some 140,000 objects) lives as
        # long as the process: out of the garbage collector's sight, a full collection no
        # longer walks it each time, which held the event loop some 80 ms.
        gc.freeze()
        # Worker threads (parsing large requests, database calls) hand the interpreter back
        # after 1 ms rather than Python's 5 ms: with two or three of them busy, the event loop
        # waited up to their sum for each of its turns.
        sys.setswitchinterval(0.001)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"broadcaster serving gRPC on {config.grpc_listen.host}:{grpc_server.port} "
            f"and HTTP on {config.http_listen.host}:{http.port}",
            flush=True,
        )
        await stop.wait()
        log.info(
            "shutting down: draining calls and sends in progress (up to %g s); a second "
            "signal stops at once",
            config.drain_grace,
        )
        draining = asyncio.create_task(app.stop(grpc_server, http))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _cut, draining)
        with contextlib.suppress(asyncio.CancelledError):
            await draining
    finally:
        app.close()


def _cut(draining: asyncio.Task[None]) -> None:
    """A second SIGTERM or SIGINT while draining: stop now, as a crash would. Batches with
    the channel are confirmed by the next replica to hold their channel, under their retry
    keys; leases lapse."""
    log.warning("second signal: stopping without waiting for the drain to end")
    draining.cancel()


def _server_command(args: argparse.Namespace) -> int:
    """`serve` and `migrate`: configured from the environment and the flags, logging as it says.
    A setting that cannot be used ends the command with status 2 and one line naming it."""
    from broadcaster.app import IncompatibleSchema, NeedsMigration, open_database
    from broadcaster.channels import PluginError
    from broadcaster.config import Config, ConfigError
    from broadcaster.store import migrate
    from broadcaster.store.sealing import SecretKeyError

    try:
        config = Config.from_env(
            os.environ,
            {
                "--database-url": args.database_url,
                "--grpc-listen": getattr(args, "grpc_listen", None),
                "--http-listen": getattr(args, "http_listen", None),
            },
        )
        logs.configure(config.log_format, config.log_level)
        if args.command == "migrate":
            db = open_database(config.database_url)
            try:
                migrate.upgrade(db.engine)
                print(f"database at schema {migrate.head_revision(db.engine)}")
            finally:
                db.close()
            return 0
        # Database calls run on threads; by default one may hold the interpreter for 5 ms before
        # the event loop gets it back, making the sender late for its rate slots (at 200
        # requests/s they are 5 ms apart). A 1 ms switch interval keeps the loop on time.
        sys.setswitchinterval(0.001)
        asyncio.run(_serve(config))
        return 0
    except (ConfigError, IncompatibleSchema, NeedsMigration, PluginError, SecretKeyError) as e:
        print(f"broadcaster: {e}", file=sys.stderr)
        return 2
    except Exception:  # logged as a record, so a crash is one JSON line too
        log.exception("broadcaster %s stopped on an unexpected error", args.command)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="broadcaster", description="Send one message to many customers on a channel."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gRPC service (migrates an empty database)")
    serve.add_argument("--database-url", help="overrides BROADCASTER_DATABASE_URL")
    serve.add_argument("--grpc-listen", help="host:port, overrides BROADCASTER_GRPC_LISTEN")
    serve.add_argument("--http-listen", help="host:port, overrides BROADCASTER_HTTP_LISTEN")
    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    mig.add_argument("--database-url", help="overrides BROADCASTER_DATABASE_URL")
    console.add_commands(sub)
    demo.add_command(sub)
    args = parser.parse_args(argv)

    if args.command in ("serve", "migrate"):
        return _server_command(args)
    if args.command == "demo":
        return demo.run(args)  # starts the service in-process; its logs go to a file
    logs.configure("text", logging.WARNING)  # a client: what it has to say is its output
    return console.run(args)


if __name__ == "__main__":
    sys.exit(main())
