"""Chat example: a deterministic "echo" LLM behind DRUM's OpenAI-compatible chat routes.

* ``chat`` answers ``/chat/completions`` with an OpenAI ``ChatCompletion``, or, when the request
  has ``"stream": true``, with an iterator of ``ChatCompletionChunk`` objects (one per word).
* ``score`` answers ``/predict/`` for a CSV with a ``promptText`` column.
* ``get_supported_llm_models`` answers ``/models``.

Replies are reproducible: ``created`` is fixed and ``id`` is derived from the request's messages,
so the same request gets the same bytes from every server. The target type is ``textgeneration``,
which needs the environment variable ``TARGET_NAME`` (e.g. ``TARGET_NAME=completion``).
"""

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pandas as pd
from openai.types import CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta

from datarobot_drum import CustomHTTPError

MODEL_ID = "tandem-echo"
CREATED = 1735689600  # fixed (2025-01-01T00:00:00Z) so that answers are reproducible
PROMPT_COLUMN = "promptText"


def load_model(code_dir: str) -> str:
    """Nothing to load; DRUM needs ``load_model`` for hook-only models. Returns the model id."""
    return MODEL_ID


def _text(content: Any) -> str:
    """A message's text: a plain string or the text parts of an OpenAI content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def reply_to(prompt: str) -> str:
    """What the echo LLM answers to one prompt."""
    return f"Echo: {prompt}"


def chat(
    completion_create_params: dict[str, Any], model: str
) -> ChatCompletion | Iterator[ChatCompletionChunk]:
    """Echo the last user message, as one completion or as a stream of chunks."""
    messages = completion_create_params.get("messages")
    if not isinstance(messages, list):
        raise CustomHTTPError("messages must be a list of chat messages", status_code=400)
    prompts = [_text(m.get("content")) for m in messages if isinstance(m, dict)]
    users = [
        _text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"
    ]
    if not users:
        raise CustomHTTPError("messages must contain at least one user message", status_code=400)
    answer = reply_to(users[-1])
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode("utf-8")).hexdigest()
    completion_id = f"chatcmpl-{digest[:24]}"
    model_id = str(completion_create_params.get("model") or model)
    if completion_create_params.get("stream"):
        return _stream(completion_id, model_id, answer)
    prompt_tokens = sum(len(p.split()) for p in prompts)
    completion_tokens = len(answer.split())
    return ChatCompletion(
        id=completion_id,
        object="chat.completion",
        created=CREATED,
        model=model_id,
        choices=[
            Choice(
                index=0,
                finish_reason="stop",
                message=ChatCompletionMessage(role="assistant", content=answer),
            )
        ],
        usage=CompletionUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )


def _stream(completion_id: str, model_id: str, answer: str) -> Iterator[ChatCompletionChunk]:
    """One chunk per word (the first also carries the role), then a final ``stop`` chunk."""
    words = answer.split(" ")
    for i, word in enumerate(words):
        delta = ChoiceDelta(content=word if i == len(words) - 1 else word + " ")
        if i == 0:
            delta = ChoiceDelta(role="assistant", content=delta.content)
        yield _chunk(completion_id, model_id, delta, None)
    yield _chunk(completion_id, model_id, ChoiceDelta(), "stop")


def _chunk(
    completion_id: str, model_id: str, delta: ChoiceDelta, finish_reason: str | None
) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=completion_id,
        object="chat.completion.chunk",
        created=CREATED,
        model=model_id,
        choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
    )


def score(data: pd.DataFrame, model: str, **kwargs: Any) -> pd.DataFrame:
    """``/predict/``: one completion per row of the ``promptText`` column (else the first)."""
    prompts = data[PROMPT_COLUMN] if PROMPT_COLUMN in data.columns else data.iloc[:, 0]
    target = os.environ.get("TARGET_NAME", "completion").strip('"')
    return pd.DataFrame({target: [reply_to(str(p)) for p in prompts]})


def get_supported_llm_models(model: str) -> list[Model]:
    """``/models``: the one model this example serves."""
    return [Model(id=MODEL_ID, created=CREATED, object="model", owned_by="tandem-examples")]
