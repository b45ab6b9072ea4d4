"""Another agent on the private network, as Steward's `steward mcp` tests
use one: the official Python SDK's client (PyPI `mcp`) lists the tools of the
server at URL with an organization's API key, then makes each call given.
Prints what it saw as JSON.

Run: python client.py URL API_KEY MODE CALLS_JSON
  MODE: auto (server/discover, 2026-07-28) or legacy (initialize, 2025-11-25)
  CALLS_JSON: [{"name": ..., "arguments": {...}, "key": "<uuid>" or null}, ...]
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, api_key: str, mode: str, calls: list[dict]) -> None:
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {api_key}"}, timeout=30)
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        listed = await client.list_tools()
        seen = {
            "protocol": client.session.protocol_version,
            "tools": {tool.name: tool.input_schema for tool in listed.tools},
            "results": [],
        }
        for call in calls:
            meta = {"io.steward/idempotency-key": call["key"]} if call.get("key") else None
            result = await client.call_tool(call["name"], call["arguments"], meta=meta)
            seen["results"].append({
                "is_error": bool(result.is_error),
                "text": "\n".join(block.text for block in result.content if block.type == "text"),
            })
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
