"""A clip-retrieval-compatible back end over our indexes (FastAPI): ``/indices-list``, ``/knn-service``, ``/metadata``.

    python -m react_explorer.knn.service --index synthworld=DIR [--index other=DIR2] [--port 1234]

Existing clip-retrieval clients (``ClipClient``, the clip front) can point at it. Each index embeds queries with
the model recorded in its manifest (``--model`` overrides it for all). Bad requests get HTTP 400 with
``{"error": "..."}`` naming the field; ``image_url`` queries are off unless ``--allow-image-url`` is given (the
server would fetch arbitrary URLs).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from react_explorer.cli.common import add_model_arguments, resolve_device, run_cli
from react_explorer.embedding.encoders import ClipEncoder, load_encoder
from react_explorer.embedding.model_spec import parse_model_spec
from react_explorer.errors import QueryError, ReactExplorerError
from react_explorer.index.clip_index import ClipIndex
from react_explorer.knn.protocol import DEFAULT_MAX_RESULT_IDS, answer_knn, answer_metadata, parse_knn_request
from vision_common.cli_help import HelpFormatter

MAX_IMAGE_URL_BYTES = 20 << 20
DEFAULT_MAX_REQUEST_BYTES = 32 << 20  # a base64 query image plus JSON


class RequestTooLarge(QueryError):
    """The request body is over ``max_request_bytes`` (HTTP 413)."""


@dataclass(frozen=True)
class ServedIndex:
    index: ClipIndex
    encoder: ClipEncoder


def create_app(
    served: Mapping[str, ServedIndex],
    *,
    max_result_ids: int = DEFAULT_MAX_RESULT_IDS,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    fetch_image_url: Callable[[str], bytes] | None = None,
) -> FastAPI:
    """The FastAPI app; ``fetch_image_url`` None refuses ``image_url`` queries.

    FastAPI reads the endpoints' annotations (``Request``) by name, so its classes are imported at module level.
    """
    if not served:
        raise ValueError("create_app needs at least one index")
    indices = {name: entry.index for name, entry in served.items()}
    app = FastAPI(title="react_explorer knn service (clip-retrieval compatible)")

    def refuse_url(url: str) -> bytes:
        raise QueryError("image_url queries are disabled on this server (start it with --allow-image-url)")

    fetch = fetch_image_url or refuse_url

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_request_bytes:
            raise RequestTooLarge(f"the request body is over {max_request_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_request_bytes:
                raise RequestTooLarge(f"the request body is over {max_request_bytes} bytes")
        try:
            return json.loads(bytes(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise QueryError(f"the request body is not valid JSON: {exc}") from exc

    def bad_request(exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=413 if isinstance(exc, RequestTooLarge) else 400)

    @app.get("/indices-list")
    def indices_list() -> list[str]:
        return list(indices)

    @app.post("/knn-service")
    async def knn_service(request: Request) -> Any:
        try:
            parsed = parse_knn_request(await read_json(request), indices, max_result_ids=max_result_ids)
            entry = served[parsed.indice_name]
            # Embedding and search are CPU work: run them off the event loop.
            return await run_in_threadpool(
                answer_knn,
                entry.index,
                parsed,
                embed_text=lambda text: entry.encoder.embed_texts([text])[0],
                embed_image=lambda image: entry.encoder.embed_pil_images([image])[0],
                fetch_image_url=fetch,
            )
        except ReactExplorerError as exc:
            return bad_request(exc)

    @app.post("/metadata")
    async def metadata(request: Request) -> Any:
        try:
            return answer_metadata(await read_json(request), indices)
        except ReactExplorerError as exc:
            return bad_request(exc)

    return app


def load_served(
    paths: Mapping[str, str],
    *,
    model: str | None,
    pretrained: str | None,
    device: str,
    verify_checksums: bool,
) -> dict[str, ServedIndex]:
    """Load every index and one encoder per distinct model (indexes built with the same model share it)."""
    encoders: dict[str, ClipEncoder] = {}
    served = {}
    for name, path in paths.items():
        index = ClipIndex.load(path, verify_checksums=verify_checksums)
        spec_text = model or index.model
        if spec_text is None:
            raise QueryError(f"index {name} ({path}) does not record its model; pass --model")
        spec = parse_model_spec(spec_text, pretrained if model else None)
        key = spec.describe()
        if key not in encoders:
            encoders[key] = load_encoder(spec, device=device)
        index.check_query_dim(encoders[key].dim, f"model {key}")
        served[name] = ServedIndex(index, encoders[key])
    return served


def fetch_url(url: str) -> bytes:
    """Download a query image (only with --allow-image-url): http(s) only, 10 s timeout, 20 MiB cap."""
    import httpx

    if not url.startswith(("http://", "https://")):
        raise QueryError(f"image_url must be http(s), got {url[:40]!r}")
    try:
        with httpx.stream("GET", url, timeout=10.0, follow_redirects=True) as response:
            response.raise_for_status()
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_IMAGE_URL_BYTES:
                    raise QueryError(f"image_url is larger than {MAX_IMAGE_URL_BYTES} bytes")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise QueryError(f"cannot fetch image_url {url}: {exc}") from exc


def parse_index_args(pairs: list[str], indices_json: str | None) -> dict[str, str]:
    """``NAME=DIR`` arguments and/or clip-retrieval's indices JSON (``{"name": "dir", ...}``)."""
    paths: dict[str, str] = {}
    if indices_json:
        path = Path(indices_json)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise QueryError(f"cannot read indices file {path}: {exc}") from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise QueryError(f"{path}: expected {{name: index directory}}")
        paths.update(data)
    for pair in pairs:
        name, sep, directory = pair.partition("=")
        if not sep or not name or not directory:
            raise QueryError(f"--index expects NAME=DIR, got {pair!r}")
        paths[name] = directory
    if not paths:
        raise QueryError("give at least one --index NAME=DIR (or --indices-paths FILE)")
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m react_explorer.knn.service",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--index", action="append", default=[], help="NAME=DIR, repeatable")
    parser.add_argument("--indices-paths", default=None, help='clip-retrieval style JSON {"name": "DIR"}')
    add_model_arguments(parser, default_help="default: each index's manifest model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--max-result-ids", type=int, default=DEFAULT_MAX_RESULT_IDS)
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES)
    parser.add_argument(
        "--allow-image-url", action="store_true", help="let clients make the server fetch URLs"
    )
    parser.add_argument("--fast-load", action="store_true", help="check index file sizes, not sha256")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        import uvicorn

        served = load_served(
            parse_index_args(args.index, args.indices_paths),
            model=args.model,
            pretrained=args.pretrained,
            device=resolve_device(args.device),
            verify_checksums=not args.fast_load,
        )
        app = create_app(
            served,
            max_result_ids=args.max_result_ids,
            max_request_bytes=args.max_request_bytes,
            fetch_image_url=fetch_url if args.allow_image_url else None,
        )
        for name, entry in served.items():
            print(
                f"serving {name}: {entry.index.count} pairs, {entry.index.modalities}, model {entry.encoder.model_id}"
            )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
