"""`python -m broadcaster_line_emulator`: run the emulator as a standalone server.

The first line on stdout is the base URL; then one JSON line per seeded account (channel id,
access token, secret, ...). The process runs until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .emulator import LineEmulator
from .state import Tier


def _account_spec(text: str) -> dict[str, str]:
    """`token=abc,secret=def,tier=verified,followers=1000,quota=5000`"""
    spec: dict[str, str] = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value, got {part!r}")
        spec[key.strip()] = value.strip()
    unknown = set(spec) - {
        "token",
        "secret",
        "tier",
        "followers",
        "seed",
        "quota",
        "name",
        "channel",
    }
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown account keys: {sorted(unknown)}")
    return spec


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m broadcaster_line_emulator",
        description="Run the LINE Messaging API emulator.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--seed", default="0", help="seed for every generated id")
    p.add_argument("--token", help="seed one account with this channel access token")
    p.add_argument("--secret", help="its channel secret")
    p.add_argument("--tier", choices=[t.value for t in Tier], help="its tier (default verified)")
    p.add_argument("--followers", type=int, help="its follower count")
    p.add_argument("--follower-seed", help="seed for its follower ids (default: channel id)")
    p.add_argument("--quota", type=int, help="its monthly message limit (default: none)")
    p.add_argument("--display-name", help="its bot display name")
    p.add_argument(
        "--account",
        action="append",
        type=_account_spec,
        default=[],
        metavar="KEY=VALUE,...",
        help="another account: token, secret, tier, followers, seed, quota, name, channel",
    )
    return p.parse_args(argv)


def _seed_accounts(emulator: LineEmulator, args: argparse.Namespace) -> None:
    specs: list[dict[str, Any]] = []
    single = (args.token, args.secret, args.tier, args.followers, args.quota, args.display_name)
    if any(value is not None for value in single):
        specs.append(
            {
                "token": args.token,
                "secret": args.secret,
                "tier": args.tier,
                "followers": args.followers,
                "seed": args.follower_seed,
                "quota": args.quota,
                "name": args.display_name,
            }
        )
    specs.extend(args.account)
    for spec in specs:
        emulator.add_account(
            access_token=spec.get("token"),
            channel_secret=spec.get("secret"),
            channel_id=spec.get("channel"),
            tier=Tier(spec.get("tier") or Tier.VERIFIED),
            followers=int(spec.get("followers") or 0),
            follower_seed=spec.get("seed"),
            quota=int(spec["quota"]) if spec.get("quota") is not None else None,
            display_name=spec.get("name") or "Emulated Shop",
        )


async def serve(args: argparse.Namespace) -> None:
    emulator = LineEmulator(seed=args.seed)
    _seed_accounts(emulator, args)
    base_url = await emulator.start(args.host, args.port)
    print(base_url, flush=True)
    for account in emulator.accounts:
        print(json.dumps(account.to_json()), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
