"""The asyncio layer around the core: connections, the hub, the sweeper, metrics."""
