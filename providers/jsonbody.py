"""Parsing JSON that strangers send us: bounded in size and nesting, and never raising anything else.

The stdlib decoder recurses once per nesting level, so a body of 200,000 ``[`` raises
RecursionError deep inside it; later code walking the result would recurse again. Bodies are
refused before parsing when too large, the decoder's RecursionError is turned into a plain
refusal, and the parsed value's depth is measured without recursion.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

# Replicate webhooks carry the whole prediction, which may inline an output as a data: URI.
MAX_BODY_BYTES = 2 * 1024 * 1024
# Real notifications nest a handful of levels (a Telegram update ~6, a Kie callback 3).
MAX_DEPTH = 32


class MalformedJson(ValueError):
    """The body is not JSON we accept: too large, too deep, or not JSON at all."""


def load_json(raw: bytes | str, *, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH) -> object:
    if len(raw) > max_bytes:
        raise MalformedJson(f"body larger than {max_bytes} bytes")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise MalformedJson("body nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise MalformedJson(f"body is not JSON: {error}") from None
    if _depth(value) > max_depth:
        raise MalformedJson(f"body nested deeper than {max_depth} levels")
    return value


def load_json_object(
    raw: bytes | str, *, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    value = load_json(raw, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(value, dict):
        raise MalformedJson("body is not a JSON object")
    return value


def _depth(value: object) -> int:
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items: list[object] = list(item.values())
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in items)
    return deepest


def same_text(received: str, expected: str) -> bool:
    """Constant-time comparison of a header value with a secret; odd bytes are a mismatch, not an error.

    ``hmac.compare_digest`` raises TypeError on non-ASCII str, and aiohttp hands undecodable header
    bytes over as lone surrogates, which ``str.encode`` refuses: both become a plain False here.
    """
    return hmac.compare_digest(received.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
