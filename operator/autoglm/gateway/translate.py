"""Translators for backends whose API is not OpenAI-shaped (a BackendRuntime's `translator`): the gateway speaks
OpenAI to every caller and to every other backend; for these it turns the OpenAI-shaped request into the
backend's own, and the backend's answer (whole or streamed) back into OpenAI's shape. Pure.

tgi: Text Generation Inference's API (also served by MindIE): POST /generate {inputs, parameters} answers
{generated_text, details}; /generate_stream sends events {token: {text, special}, generated_text, details}, the
last with the whole text and the finish reason."""

from __future__ import annotations

import json
import time
from typing import Any

from autoglm.gateway.errors import ErrorCode, GatewayError

TRANSLATORS = ("tgi",)
# TGI's finish reasons in OpenAI's words.
_FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}


def _prompt(body: dict[str, Any]) -> str:
    """A completion's prompt, or a chat's messages as one prompt (role: content lines, then the assistant's
    turn; the model's own chat template is the server's business where it applies one)."""
    if "messages" not in body:
        prompt = body.get("prompt", "")
        return prompt if isinstance(prompt, str) else "".join(map(str, prompt))
    lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in body.get("messages") or []]
    return "\n".join([*lines, "assistant:"])


def request(translator: str, path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path, body) of the backend's own request for an OpenAI-shaped one."""
    if translator != "tgi":
        raise GatewayError.of(ErrorCode.INTERNAL)  # a translator the catalog allows but this gateway lacks
    parameters: dict[str, Any] = {"details": True}
    if body.get("max_tokens") is not None:
        parameters["max_new_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            parameters[name] = body[name]
    stop = body.get("stop")
    if stop:
        parameters["stop"] = [stop] if isinstance(stop, str) else list(stop)
    target = "/generate_stream" if body.get("stream") else "/generate"
    return target, {"inputs": _prompt(body), "parameters": parameters}


def answer(translator: str, path: str, model: str, found: Any) -> dict[str, Any]:
    """The backend's whole answer in OpenAI's shape for `path` (/v1/chat/completions or /v1/completions)."""
    if translator != "tgi" or not isinstance(found, dict) or not isinstance(found.get("generated_text"), str):
        raise GatewayError.of(ErrorCode.BACKEND_ERROR, detail="an answer the translator cannot read")
    details = found.get("details") or {}
    text, finish = found["generated_text"], _FINISH.get(details.get("finish_reason", ""), "stop")
    completion = int(details.get("generated_tokens") or 0)
    prompt = len(details.get("prefill") or [])
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    created = int(time.time())
    if path.endswith("/chat/completions"):
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }
        return {"object": "chat.completion", "created": created, "model": model, "choices": [choice], "usage": usage}
    choice = {"index": 0, "text": text, "finish_reason": finish}
    return {"object": "text_completion", "created": created, "model": model, "choices": [choice], "usage": usage}


def stream_event(translator: str, path: str, model: str, line: bytes) -> bytes:
    """One line of the backend's event stream as OpenAI's (b"" for lines that carry nothing); the last event
    is followed by OpenAI's `data: [DONE]`."""
    if translator != "tgi" or not line.startswith(b"data:"):
        return b""
    try:
        event = json.loads(line[5:])
    except json.JSONDecodeError:
        raise GatewayError.of(ErrorCode.BACKEND_ERROR, detail="an unreadable streamed event") from None
    token = event.get("token") or {}
    text = "" if token.get("special") else str(token.get("text") or "")
    details = event.get("details")
    finish = _FINISH.get(details.get("finish_reason", ""), "stop") if isinstance(details, dict) else None
    chat = path.endswith("/chat/completions")
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    choice |= {"delta": {"content": text}} if chat else {"text": text}
    kind = "chat.completion.chunk" if chat else "text_completion"
    out = b"data: " + json.dumps({"object": kind, "model": model, "choices": [choice]}).encode() + b"\n\n"
    return out + (b"data: [DONE]\n\n" if finish else b"")
