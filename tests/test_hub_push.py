"""``pebr curate push``: the real ``push_to_hub`` against a local Hub server on 127.0.0.1.

``huggingface_hub`` and ``datasets`` read ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and
``HF_HUB_DISABLE_XET`` once, at import (``huggingface_hub.constants``, ``datasets.config``), and
this test session imported them offline (tests/conftest.py). So every client runs in a
subprocess with its own environment: the endpoint is the local server, uploads take the basic
LFS transfer, the cache and login live in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import LocalHub
from splits_fixture import FUNNEL, make_splits_dir

from data_cards.render import parse_card

ROOT = Path(__file__).resolve().parents[1]
WRITE_TOKEN = "hf_local_write_alice"
READ_TOKEN = "hf_local_read_bob"
REPO = "pebr-org/tiny-splits"
CLIENT_TIMEOUT_S = 180


@pytest.fixture
def hub():
    server = LocalHub(
        tokens={WRITE_TOKEN: ("alice", "write"), READ_TOKEN: ("bob", "read")},
        orgs={"alice": ["pebr-org"]},
        page_size=3,  # small pages, so tree listings follow the Link header
    ).start()
    yield server
    server.stop()
    # a route the clients needed and the server lacks is a gap in the test double
    assert server.unknown_routes == []


def client_env(hub: LocalHub, home: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home),  # no saved login or cache of the machine is used
        HF_HUB_DISABLE_TELEMETRY="1",
        # datasets pings an S3 URL to count downloads; nothing may leave this machine
        HF_UPDATE_DOWNLOAD_COUNTS="0",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        cwd=ROOT,
    )


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return python(f"import sys; from trainer.cli import run; sys.exit(run({args!r}))", env)


LOADER = """
import json, sys
import datasets
from datasets.exceptions import DatasetNotFoundError
# The Hub's dataset viewer is a separate service at datasets-server.<endpoint host>; the test
# double does not provide it, and asking for it would mean a DNS lookup of a name that is not
# on this machine. Users of the real Hub keep the default.
datasets.config.USE_PARQUET_EXPORT = False
revision = sys.argv[1] if len(sys.argv) > 1 else None
out = {}
try:  # without a token, a private dataset is invisible (asked first: the home's cache is still empty)
    datasets.load_dataset(%(repo)r, token=False, cache_dir=%(cache)r + "/anon")
    out["anonymous"] = "loaded"
except DatasetNotFoundError as exc:
    out["anonymous"] = "not found"
ds = datasets.load_dataset(%(repo)r, cache_dir=%(cache)r, revision=%(revision)r)
out["splits"] = {
    name: {row["uid"]: [list(img.size) for img in row["images"]] for row in split} for name, split in ds.items()
}
out["pass_rate"] = {row["uid"]: row["pass_rate"] for split in ds.values() for row in split}
print("RESULT" + json.dumps(out))
"""


def load_back(hub: LocalHub, tmp_path: Path, cache: str, revision: str | None = None) -> dict:
    proc = python(
        LOADER % {"repo": REPO, "cache": str(tmp_path / cache), "revision": revision},
        # a fresh home per load: huggingface_hub falls back to cached files when the Hub says no
        client_env(hub, tmp_path / f"home-{cache}", WRITE_TOKEN),
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + "\n".join(hub.requests[-30:])
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def repo_files(hub: LocalHub, revision: str = "main") -> dict:
    repo = hub.repos[("dataset", REPO)]
    return repo.resolve(revision).files


@pytest.mark.slow
def test_push_round_trip_through_the_local_hub(hub, tmp_path):
    first = make_splits_dir(tmp_path / "run1")
    env = client_env(hub, tmp_path / "home-push", WRITE_TOKEN)

    # 1. push (the CLI, the real push_to_hub), private
    proc = cli(["curate", "push", "--splits", str(first.splits_dir), "--repo-id", REPO, "--private"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = hub.repos[("dataset", REPO)]
    assert repo.private
    files = repo_files(hub)
    assert sorted(p for p in files if p.startswith("data/")) == sorted(
        f"data/{s}-00000-of-00001.parquet" for s in first.rows
    )
    assert all(files[p].is_lfs for p in files if p.endswith((".parquet", ".png")))
    card_head = repo.branches["main"]
    data_commit = repo.commits[card_head].parent

    # the card on the Hub: rendered by pebr, numbers of this run, YAML as push_to_hub wrote it
    meta, body = parse_card(hub.read(files["README.md"]).decode())
    assert {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]} == first.rows
    assert meta["configs"][0]["data_files"][0] == {"split": "perception", "path": "data/perception-*"}
    assert f"| **kept** | **{FUNNEL['kept']}** |" in body
    assert f'load_dataset("{REPO}")' in body
    assert f"pebr curate push --splits {first.splits_dir} --repo-id {REPO} --private" in body
    assert hub.read(files["assets/pass_rate_histogram.png"]).startswith(b"\x89PNG")

    # 2. load back through the same endpoint: rows, decoded images of the right sizes
    loaded = load_back(hub, tmp_path, "cache1")
    assert loaded["anonymous"] == "not found"
    assert {s: len(rows) for s, rows in loaded["splits"].items()} == first.rows
    for rows in loaded["splits"].values():
        for uid, sizes in rows.items():
            assert [tuple(s) for s in sizes] == first.sizes[uid]

    # 3. a second push with changed data and smaller shards updates the same repo in place
    second = make_splits_dir(tmp_path / "run2", drop_rows=1)
    proc = cli(
        ["curate", "push", "--splits", str(second.splits_dir), "--repo-id", REPO, "--max-shard-size", "1000"],
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(hub.repos) == [("dataset", REPO)]
    new_data_commit = repo.commits[repo.branches["main"]].parent
    assert repo.commits[new_data_commit].parent == card_head  # history goes on, nothing rewritten
    data_files = sorted(p for p in repo_files(hub) if p.startswith("data/"))
    n = len([p for p in data_files if p.startswith("data/perception-")])
    assert n > 1
    # only the new shards: push_to_hub deleted the old ones it did not overwrite
    assert [p for p in data_files if p.startswith("data/perception-")] == [
        f"data/perception-{i:05d}-of-{n:05d}.parquet" for i in range(n)
    ]
    assert "data/perception-00000-of-00001.parquet" not in data_files
    rows = sum(pq.read_table(pa.BufferReader(hub.read(repo_files(hub)[p]))).num_rows for p in data_files)
    assert rows == sum(second.rows.values())
    meta, _ = parse_card(hub.read(repo_files(hub)["README.md"]).decode())
    assert {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]} == second.rows

    reloaded = load_back(hub, tmp_path, "cache2")
    assert {s: len(rows) for s, rows in reloaded["splits"].items()} == second.rows
    # the first push is still there, pinned by its commit
    pinned = load_back(hub, tmp_path, "cache3", revision=data_commit)
    assert {s: len(rows) for s, rows in pinned["splits"].items()} == first.rows


REJECT = """
import json
from curation.hub import push_splits, HubAuthError
out = {}
for name, token in (("wrong", "hf_not_a_token"), ("read_only", %(read)r)):
    try:
        push_splits(%(splits)r, %(repo)r, token=token)
        out[name] = "pushed"
    except HubAuthError as exc:
        out[name] = str(exc)
print("RESULT" + json.dumps(out))
"""


def test_push_with_a_bad_token_is_rejected(hub, tmp_path):
    fx = make_splits_dir(tmp_path / "run")
    proc = python(
        REJECT % {"read": READ_TOKEN, "splits": str(fx.splits_dir), "repo": REPO},
        client_env(hub, tmp_path / "home", None),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))[len("RESULT") :])
    assert "refused the token (401: Invalid credentials in Authorization header)" in out["wrong"]
    assert f"the token has no write access to {REPO}" in out["read_only"], out["read_only"]
    assert hub.repos == {}  # nothing was created


def test_cli_push_without_token_fails_with_one_line(hub, tmp_path):
    fx = make_splits_dir(tmp_path / "run")
    proc = cli(
        ["curate", "push", "--splits", str(fx.splits_dir), "--repo-id", REPO],
        client_env(hub, tmp_path / "home", None),
    )
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "error: the Hub at" in err
    assert "set HF_TOKEN or run `hf auth login`" in err
    assert "Traceback" not in err
    assert hub.repos == {}


# ---------------------------------------------------------------------------- the server itself


def _request(
    url: str, token: str | None = None, method: str = "GET", data: bytes | None = None, headers=None
):
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.parametrize(
    ("token", "status", "error_code"),
    [
        (None, 404, "RepoNotFound"),  # anonymous: a private repo looks missing
        ("hf_wrong", 401, None),  # unknown token: refused outright, as on the Hub
        (READ_TOKEN, 404, "RepoNotFound"),  # a valid token of someone outside the org
        (WRITE_TOKEN, 200, None),  # a member of the org
    ],
)
def test_local_hub_checks_tokens_on_private_repos(hub, token, status, error_code):
    create = json.dumps({"name": "secret", "organization": "pebr-org", "type": "dataset", "private": True})
    code, _, _ = _request(f"{hub.url}/api/repos/create", WRITE_TOKEN, "POST", create.encode())
    assert code == 200
    code, headers, _ = _request(f"{hub.url}/api/datasets/pebr-org/secret", token)
    assert code == status
    assert headers.get("X-Error-Code") == error_code


def test_local_hub_serves_ranges_and_rejects_stale_parents(hub):
    create = json.dumps({"name": "r", "organization": "pebr-org", "type": "dataset"}).encode()
    assert _request(f"{hub.url}/api/repos/create", WRITE_TOKEN, "POST", create)[0] == 200
    head = hub.repos[("dataset", "pebr-org/r")].branches["main"]
    payload = b"\n".join(
        json.dumps(x).encode()
        for x in (
            {"key": "header", "value": {"summary": "add", "parentCommit": head}},
            {"key": "file", "value": {"path": "a.txt", "content": "aGVsbG8gd29ybGQ=", "encoding": "base64"}},
        )
    )
    url = f"{hub.url}/api/datasets/pebr-org/r/commit/main"
    assert _request(url, WRITE_TOKEN, "POST", payload)[0] == 200
    # the same parent again: someone committed since, the Hub answers 412
    assert _request(url, WRITE_TOKEN, "POST", payload)[0] == 412
    status, headers, body = _request(
        f"{hub.url}/datasets/pebr-org/r/resolve/main/a.txt", headers={"Range": "bytes=6-"}
    )
    assert (status, body, headers["Content-Range"]) == (206, b"world", "bytes 6-10/11")


def test_push_refuses_to_run_offline(tmp_path, capsys):
    # this test session is offline (tests/conftest.py): a push must say so, not hang or half-run
    from trainer.cli import run

    fx = make_splits_dir(tmp_path / "run")
    assert run(["curate", "push", "--splits", str(fx.splits_dir), "--repo-id", REPO]) == 2
    assert "HF_HUB_OFFLINE is set" in " ".join(capsys.readouterr().err.split())


def test_local_hub_lfs_upload_checks_content_and_reads_chunked_bodies(hub):
    import hashlib

    create = json.dumps({"name": "l", "organization": "pebr-org", "type": "dataset"}).encode()
    assert _request(f"{hub.url}/api/repos/create", WRITE_TOKEN, "POST", create)[0] == 200
    data = b"\x00binary" * 1000
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
    url = f"{hub.url}/datasets/pebr-org/l.git/info/lfs/objects/batch"
    _, _, body = _request(url, WRITE_TOKEN, "POST", json.dumps(batch).encode())
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]
    # wrong content for the announced oid: refused (the ticket is spent; ask the batch API again)
    assert _request(href, method="PUT", data=b"other")[0] == 400
    _, _, body = _request(url, WRITE_TOKEN, "POST", json.dumps(batch).encode())
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]
    # an iterable body goes out with Transfer-Encoding: chunked
    chunks = iter([data[:3000], data[3000:]])
    assert _request(href, method="PUT", data=chunks, headers={"Transfer-Encoding": "chunked"})[0] == 200
    assert hub.lfs[oid] == data
    # once stored, the batch API says there is nothing to send
    _, _, body = _request(url, WRITE_TOKEN, "POST", json.dumps(batch).encode())
    assert "actions" not in json.loads(body)["objects"][0]
