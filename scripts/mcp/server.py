"""A small MCP server for Steward's MCP client tests, written with the
official Python SDK (PyPI `mcp`), served over streamable HTTP on loopback.

It keeps orders as a shop would, once per idempotency key: the key comes in
the call's `_meta` as `io.steward/idempotency-key`, and as an
`Idempotency-Key` header. Run: python server.py PORT
"""

import asyncio
import json
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("steward-test-shop")
orders: dict[str, int] = {}


def idempotency_key(ctx: Context) -> tuple[str | None, str | None]:
    meta = ctx.request_context.meta
    in_meta = None
    if meta is not None:
        extra = meta if isinstance(meta, dict) else (getattr(meta, "model_extra", None) or {})
        in_meta = extra.get("io.steward/idempotency-key")
    headers = ctx.headers or {}
    return in_meta, headers.get("idempotency-key")


@server.tool(description="Places an order for an item; the same idempotency key places it once.")
def place_order(item: str, quantity: int, ctx: Context) -> str:
    in_meta, in_header = idempotency_key(ctx)
    key = in_meta or in_header
    if key is None:
        raise ToolError("an idempotency key is required")
    if key not in orders:
        orders[key] = len(orders) + 1
    return json.dumps({
        "order": orders[key],
        "item": item,
        "quantity": quantity,
        "orders_placed": len(orders),
        "meta_key": in_meta,
        "header_key": in_header,
        "protocol": ctx.protocol_version,
    })


@server.tool(description="Always fails, with a reason.")
def out_of_stock(item: str) -> str:
    raise ToolError(f"{item} is out of stock")


@server.tool(description="Answers after the given number of seconds.")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
