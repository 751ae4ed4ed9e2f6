"""The HTTP side: channel webhooks and health (aiohttp)."""
