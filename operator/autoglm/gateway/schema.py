"""The unified request and response (seed §2.2): `model_name`, `version`, `data` in; `result`, `status_code`,
`message` out, under a versioned schema. `data` carries either chat messages or a prompt, and the sampling
parameters every backend understands; it becomes an OpenAI-shaped request for the backend (catalog entries
whose API is not OpenAI-shaped get a translator there). Pure."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autoglm.gateway.errors import ErrorCode, GatewayError

SCHEMA_VERSIONS = ("v1",)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class InferenceData(BaseModel):
    """What to infer: chat `messages` or a `prompt`, and the sampling parameters."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] | None = None
    prompt: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: list[str] | None = None
    stream: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> InferenceData:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of data.messages and data.prompt")
        if self.messages is not None and not self.messages:
            raise ValueError("data.messages is empty")
        return self


class UnifiedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = "v1"
    model_name: str = Field(min_length=1)
    version: str = "latest"
    data: InferenceData


class UnifiedResponse(BaseModel):
    result: dict[str, Any] | None
    status_code: int
    message: str


def parse_request(body: object) -> UnifiedRequest:
    """The request, or the table's error naming the field and problem (a bad schema version first)."""
    if not isinstance(body, dict):
        raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail="the body must be a JSON object")
    version = body.get("schema_version", "v1")
    if version not in SCHEMA_VERSIONS:
        raise GatewayError.of(
            ErrorCode.UNSUPPORTED_SCHEMA_VERSION, version=version, supported=", ".join(SCHEMA_VERSIONS)
        )
    try:
        return UnifiedRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail=f"{where}: {first['msg']}") from None


def to_openai(request: UnifiedRequest, served_name: str) -> tuple[str, dict[str, Any]]:
    """(path, body) of the OpenAI-compatible request the backend gets."""
    data = request.data
    params = data.model_dump(exclude_none=True, exclude={"messages", "prompt"})
    if data.messages is not None:
        messages = [m.model_dump() for m in data.messages]
        return "/v1/chat/completions", {"model": served_name, "messages": messages, **params}
    return "/v1/completions", {"model": served_name, "prompt": data.prompt, **params}


def from_openai(answer: dict[str, Any]) -> UnifiedResponse:
    """The backend's OpenAI-shaped answer as the unified response: the text, why it stopped, token usage."""
    choice = (answer.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") if "message" in choice else choice.get("text")
    usage = answer.get("usage") or {}
    result = {
        "text": text or "",
        "finish_reason": choice.get("finish_reason"),
        "usage": {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens") if k in usage},
    }
    return UnifiedResponse(result=result, status_code=200, message="ok")
