"""clip-retrieval's /knn-service, /metadata and /indices-list shapes over our index, tested with raw HTTP JSON."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from react_explorer.cli.build_index import main as build_main
from react_explorer.knn.service import create_app, load_served, parse_index_args
from tests.support.paths import REPO_ROOT
from tests.support.react_support import save_random_tiny_clip, write_toy_pool

RED_SQUARES = {0, 8, 16}  # toy pool rows captioned "red square"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("knn")
    clip = save_random_tiny_clip(root)
    pool = write_toy_pool(root / "pool", count=24)
    assert build_main(["--pool", str(pool), "--out", str(root / "idx"), "--model", f"local-dir:{clip}",
                       "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    return root / "idx"


@pytest.fixture(scope="module")
def served(index_dir):
    return load_served(
        {"toy": str(index_dir)}, model=None, pretrained=None, device="cpu", verify_checksums=True
    )


@pytest.fixture(scope="module")
def client(served):
    return TestClient(create_app(served))


def knn(client, **body):
    return client.post("/knn-service", json={"indice_name": "toy", "num_images": 3, **body})


def test_indices_list(client):
    assert client.get("/indices-list").json() == ["toy"]


def test_text_query_response_shape(client):
    response = knn(client, text="red square", modality="text")
    assert response.status_code == 200
    results = response.json()
    assert len(results) == 3
    assert all({"id", "similarity", "caption", "url", "image_path", "key"} <= set(r) for r in results)
    assert {r["id"] for r in results} == RED_SQUARES
    assert all(r["caption"] == "red square" and r["similarity"] > 0.998 for r in results)
    assert results[0]["url"] == f"synthworld://pool/{results[0]['id']:09d}.png"


def test_only_num_images_results_carry_metadata(client):
    results = knn(client, text="red square", modality="text", num_result_ids=10).json()
    assert len(results) == 10
    assert all("caption" in r for r in results[:3])
    assert all(set(r) == {"id", "similarity"} for r in results[3:])
    similarities = [r["similarity"] for r in results]
    assert similarities == sorted(similarities, reverse=True)


def test_image_and_embedding_queries(client, served, index_dir):
    png = (index_dir.parent / "pool" / "images" / "0005.png").read_bytes()
    results = knn(client, image=base64.b64encode(png).decode(), modality="image").json()
    assert results[0]["id"] == 5 and results[0]["similarity"] > 0.998
    vector = served["toy"].index.vectors(np.array([7]), "text")[0]
    results = knn(client, embedding_input=vector.tolist(), modality="text").json()
    assert results[0]["id"] in {7, 15, 23}  # "yellow circle" rows share one caption, so one embedding
    assert results[0]["similarity"] == pytest.approx(1.0, abs=2e-3)
    # Precedence: text wins over embedding_input.
    results = knn(client, text="red square", embedding_input=vector.tolist(), modality="text").json()
    assert {r["id"] for r in results} == RED_SQUARES


def test_deduplicate_removes_near_duplicates(client, served):
    plain = knn(client, text="red square", modality="image", num_images=20).json()
    deduped = knn(client, text="red square", modality="image", num_images=20, deduplicate=True).json()
    assert deduped[0]["id"] == plain[0]["id"] and len(deduped) < len(plain)
    ids = [r["id"] for r in deduped]
    assert len(set(ids)) == len(ids)
    vectors = served["toy"].index.vectors(np.array(ids), "image")
    sims = vectors @ vectors.T
    assert (sims[np.triu_indices(len(ids), 1)] < 0.94).all()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "x", "num_images": 3, "indice_name": "toy"}, "field 'modality' is required"),
        (
            {"text": "x", "modality": "text", "num_images": 3, "indice_name": "nope"},
            "unknown indice_name 'nope'",
        ),
        ({"text": "x", "modality": "video", "num_images": 3, "indice_name": "toy"}, "modality must be"),
        ({"text": "x", "modality": "text", "num_images": 0, "indice_name": "toy"}, "0 < num_images"),
        ({"text": "x", "modality": "text", "num_images": "3", "indice_name": "toy"}, "must be a int"),
        ({"modality": "text", "num_images": 3, "indice_name": "toy"}, "give one of"),
        ({"image": "@@@", "modality": "image", "num_images": 3, "indice_name": "toy"}, "not valid base64"),
        (
            {"image": "aGVsbG8=", "modality": "image", "num_images": 3, "indice_name": "toy"},
            "not a decodable image",
        ),
        (
            {"image_url": "http://x/y.png", "modality": "image", "num_images": 3, "indice_name": "toy"},
            "disabled",
        ),
        (
            {"embedding_input": [1.0, 0.0], "modality": "text", "num_images": 3, "indice_name": "toy"},
            "dimension 2",
        ),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_requests_get_400_with_the_reason(client, body, message):
    response = client.post("/knn-service", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_invalid_json_and_metadata_route(client):
    response = client.post("/knn-service", content=b"{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = client.post("/metadata", json={"indice_name": "toy", "ids": [3, 0]})
    assert response.status_code == 200
    assert [(r["id"], r["metadata"]["caption"]) for r in response.json()] == [
        (3, "yellow square"),
        (0, "red square"),
    ]
    bad = client.post("/metadata", json={"indice_name": "toy", "ids": [24]})
    assert bad.status_code == 400 and "outside [0, 24)" in bad.json()["error"]


def test_oversized_body_gets_413(served):
    small = TestClient(create_app(served, max_request_bytes=100))
    response = small.post("/knn-service", json={"indice_name": "toy", "text": "x" * 200, "modality": "text"})
    assert response.status_code == 413 and "over 100 bytes" in response.json()["error"]


def test_index_arguments():
    assert parse_index_args(["a=/x", "b=/y"], None) == {"a": "/x", "b": "/y"}
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_index_args(["/x"], None)
    with pytest.raises(ValueError, match="at least one"):
        parse_index_args([], None)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_real_server_over_http(index_dir):
    """The CLI serves real HTTP: what a clip-retrieval client sends, byte for byte JSON."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "react_explorer.knn.service",
        "--index",
        f"toy={index_dir}",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/indices-list", timeout=1).json() == ["toy"]:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        body = {"text": "red square", "modality": "text", "num_images": 3, "indice_name": "toy",
                "deduplicate": True, "use_safety_model": True, "aesthetic_score": "", "aesthetic_weight": ""}  # fmt: skip
        response = httpx.post(f"{url}/knn-service", json=body, timeout=10)
        assert response.status_code == 200
        results = response.json()
        assert results[0]["caption"] == "red square" and results[0]["id"] in RED_SQUARES
    finally:
        server.terminate()
        server.wait(timeout=10)
