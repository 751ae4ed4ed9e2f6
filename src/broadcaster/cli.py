"""The `broadcaster` command: serve, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace

from broadcaster.api.auth import ConfigError
from broadcaster.app import App, NeedsMigration, open_database, prepare_schema
from broadcaster.channels import PluginError
from broadcaster.config import Config
from broadcaster.store import migrate
from broadcaster.store.sealing import SecretKeyError

log = logging.getLogger("broadcaster")


async def _serve(config: Config) -> None:
    app = App.build(config)
    try:
        prepare_schema(app.db)
        grpc_server, http = await app.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        host, _ = config.grpc_address()
        http_host, _ = config.http_address()
        print(
            f"broadcaster serving gRPC on {host}:{grpc_server.port} "
            f"and HTTP on {http_host}:{http.port}",
            flush=True,
        )
        await stop.wait()
        log.info("shutting down: draining in-flight calls")
        await app.stop(grpc_server, http)
    finally:
        app.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="broadcaster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gRPC service (migrates an empty database)")
    serve.add_argument("--database-url", help="overrides BROADCASTER_DATABASE_URL")
    serve.add_argument("--grpc-listen", help="host:port, overrides BROADCASTER_GRPC_LISTEN")
    serve.add_argument("--http-listen", help="host:port, overrides BROADCASTER_HTTP_LISTEN")
    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    mig.add_argument("--database-url", help="overrides BROADCASTER_DATABASE_URL")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = Config.from_env()
    if args.database_url:
        config = replace(config, database_url=args.database_url)
    try:
        if args.command == "migrate":
            db = open_database(config.database_url)
            try:
                migrate.upgrade(db.engine)
                print(f"database at schema {migrate.head_revision(db.engine)}")
            finally:
                db.close()
            return 0
        if args.grpc_listen:
            config = replace(config, grpc_listen=args.grpc_listen)
        if args.http_listen:
            config = replace(config, http_listen=args.http_listen)
        asyncio.run(_serve(config))
        return 0
    except (ConfigError, NeedsMigration, PluginError, SecretKeyError) as e:
        print(f"broadcaster: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
