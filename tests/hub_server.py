"""A local stand-in for the Hugging Face Hub's HTTP API (test support, not shipped).

It speaks enough of the real protocol for ``huggingface_hub`` (2.x) and ``datasets`` (5.x) to
push a dataset and load it back, with ``HF_ENDPOINT`` pointing here and ``HF_HUB_DISABLE_XET=1``
(so uploads take the basic Git LFS transfer):

- ``GET /api/whoami-v2``, ``POST /api/repos/create``, ``POST /api/validate-yaml``
- ``GET /api/{type}s/{id}[/revision/{rev}]`` (repo info), ``.../refs``, ``.../commits/{rev}``,
  ``POST .../branch/{branch}``
- ``POST .../preupload/{rev}``, ``POST /{prefix}{id}.git/info/lfs/objects/batch``, the upload
  (``PUT``, a one-time ticket as a presigned URL has) and the ``verify`` call
- ``POST .../commit/{rev}`` with the NDJSON payload (``header``, ``file``, ``lfsFile``,
  ``deletedFile``, ``deletedFolder``), ``parentCommit`` checked (412)
- ``GET .../tree/{rev}[/{path}]`` (paginated with a ``Link`` header), ``POST .../paths-info/{rev}``
- ``HEAD``/``GET /{prefix}{id}/resolve/{rev}/{path}``, with ``Range``

Repositories live in memory as commits of ``path -> blob`` maps. Bearer tokens are checked:
an unknown token is refused with 401 as the Hub refuses it, writes need a write token for the
namespace, private repositories are invisible to others. Routes it does not know answer 404
and are logged and recorded in :attr:`LocalHub.unknown_routes`, so gaps show up in tests.

Run it by hand with ``python tests/hub_server.py --token hf_dev:alice:write``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

logger = logging.getLogger("hub_server")

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
#: files above this size are LFS whatever their name, as on the Hub
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
#: the extensions the Hub's default .gitattributes sends to LFS (a subset that covers data files)
LFS_SUFFIXES = (
    ".parquet", ".arrow", ".bin", ".safetensors", ".pt", ".pth", ".npy", ".npz", ".zip", ".gz", ".tar",
    ".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp3", ".wav", ".mp4", ".h5", ".onnx", ".msgpack", ".pkl",
)  # fmt: skip
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
SIZE_CATEGORIES = {
    "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
    "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T",
}  # fmt: skip
INVALID_TOKEN = "Invalid credentials in Authorization header"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Entry:
    """A file in a commit: regular (content stored by git oid) or LFS (by sha256)."""

    size: int
    oid: str  # git oid of the content (regular) or of the pointer (LFS)
    sha256: str | None = None

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    def to_json(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.sha256 is not None:
            pointer = lfs_pointer(self.sha256, self.size)
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(pointer)}
        return out


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    author: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class HubError(Exception):
    """An HTTP error answer, with the Hub's error headers."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class LocalHub:
    """The server: state, routes, start/stop. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        tokens: dict[str, tuple[str, str]] | None = None,
        orgs: dict[str, list[str]] | None = None,
        page_size: int = 1000,
    ):
        #: token -> (user, "read" | "write")
        self.tokens = dict(tokens or {})
        #: user -> organisations they belong to
        self.orgs = dict(orgs or {})
        self.page_size = page_size
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # git oid -> content of regular files
        self.lfs: dict[str, bytes] = {}  # sha256 -> content of LFS files
        self.tickets: dict[str, tuple[str, int]] = {}  # upload ticket -> (sha256, size)
        self.unknown_routes: list[str] = []
        self.requests: list[str] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._commit_counter = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local hub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> LocalHub:
        handler = type("BoundHubHandler", (HubHandler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-hub", daemon=True
        )
        self._thread.start()
        logger.info("local hub listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state helpers

    def user_of(self, token: str | None) -> tuple[str | None, str | None]:
        if token is None:
            return None, None
        if token not in self.tokens:
            raise HubError(401, INVALID_TOKEN)
        return self.tokens[token]

    def can_write(self, user: str | None, role: str | None, namespace: str) -> bool:
        return (
            user is not None
            and role == "write"
            and (namespace == user or namespace in self.orgs.get(user, []))
        )

    def can_read(self, user: str | None, repo: Repo) -> bool:
        return not repo.private or (
            user is not None and (repo.namespace == user or repo.namespace in self.orgs.get(user, []))
        )

    def get_repo(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or not self.can_read(user, repo):
            # the Hub does not tell "private" from "missing"
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def get_commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def new_commit(
        self, repo: Repo, branch: str, files: dict[str, Entry], title: str, message: str, user: str
    ) -> Commit:
        parent = repo.branches.get(branch)
        self._commit_counter += 1
        seed = json.dumps([parent, title, sorted((p, e.oid) for p, e in files.items()), self._commit_counter])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(oid, parent, title, message, _now(), user, dict(files))
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def store_regular(self, data: bytes) -> Entry:
        oid = git_blob_oid(data)
        self.blobs[oid] = data
        return Entry(size=len(data), oid=oid)

    def read(self, entry: Entry) -> bytes:
        return self.lfs[entry.sha256] if entry.sha256 is not None else self.blobs[entry.oid]

    def repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"


def _tree_entries(files: dict[str, Entry], prefix: str, recursive: bool) -> list[tuple[str, Entry | None]]:
    """(path, entry) under ``prefix`` (entry None for a folder), folders before files, sorted."""
    base = prefix.strip("/")
    folders: set[str] = set()
    out_files = []
    for path, entry in files.items():
        if base and not path.startswith(base + "/"):
            continue
        rest = path[len(base) + 1 :] if base else path
        parts = rest.split("/")
        if recursive:
            for i in range(1, len(parts)):
                folders.add("/".join(filter(None, [base, *parts[:i]])))
            out_files.append((path, entry))
        elif len(parts) == 1:
            out_files.append((path, entry))
        else:
            folders.add("/".join(filter(None, [base, parts[0]])))
    return [(f, None) for f in sorted(folders)] + sorted(out_files, key=lambda x: x[0])


def _folder_oid(files: dict[str, Entry], folder: str) -> str:
    inside = sorted((p, e.oid) for p, e in files.items() if p.startswith(folder + "/"))
    return hashlib.sha1(json.dumps(inside).encode()).hexdigest()


def _validate_card_yaml(content: str) -> tuple[list[str], list[str]]:
    """Errors and warnings for a README's YAML metadata, checking what the Hub checks for datasets."""
    if not content.startswith("---"):
        return [], ["empty or missing yaml metadata in repo card"]
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
    if not match:
        return ["the YAML metadata block is not closed by '---'"], []
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return [f"YAML metadata does not parse: {exc}"], []
    if meta is None:
        return [], ["empty or missing yaml metadata in repo card"]
    if not isinstance(meta, dict):
        return ["YAML metadata must be a mapping"], []
    errors = []
    for key in ("task_categories", "size_categories", "tags"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key])):
            errors.append(f'"{key}" must be a list of strings')
    for value in meta.get("size_categories") or []:
        if value not in SIZE_CATEGORIES:
            errors.append(f'"size_categories" value {value!r} is not one of {sorted(SIZE_CATEGORIES)}')
    if "license" in meta and not isinstance(meta["license"], (str, list)):
        errors.append('"license" must be a string or a list of strings')
    for config in meta.get("configs") or []:
        if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
            errors.append('"configs" items need a "config_name"')
            continue
        data_files = config.get("data_files")
        items = data_files if isinstance(data_files, list) else [data_files]
        for item in items:
            if isinstance(item, dict) and not (isinstance(item.get("split"), str) and item.get("path")):
                errors.append(f'"configs" {config["config_name"]}: data_files items need "split" and "path"')
    info = meta.get("dataset_info")
    for one in info if isinstance(info, list) else [info] if info is not None else []:
        if not isinstance(one, dict):
            errors.append('"dataset_info" must be a mapping or a list of mappings')
            continue
        for split in one.get("splits") or []:
            if not (isinstance(split, dict) and isinstance(split.get("name"), str)):
                errors.append('"dataset_info" splits need a "name"')
            elif not isinstance(split.get("num_examples"), int):
                errors.append(f'"dataset_info" split {split["name"]}: "num_examples" must be an integer')
    return errors, []


class HubHandler(BaseHTTPRequestHandler):
    """Routes requests to the bound :class:`LocalHub` (set as the class attribute ``hub``)."""

    hub: LocalHub
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every answer carries Content-Length

    R = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
    API = r"^/api/(?P<kind>models|datasets|spaces)/" + R
    ROUTES: list[tuple[str, str, str]] = [
        ("GET", r"^/api/whoami-v2$", "whoami"),
        ("GET", r"^/api/agent-harnesses$", "agent_harnesses"),
        ("POST", r"^/api/repos/create$", "create_repo"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml"),
        ("GET", API + r"$", "repo_info"),
        ("GET", API + r"/revision/(?P<rev>[^/]+)$", "repo_info"),
        ("GET", API + r"/refs$", "refs"),
        ("GET", API + r"/commits/(?P<rev>[^/]+)$", "commits"),
        ("POST", API + r"/branch/(?P<branch>[^/]+)$", "create_branch"),
        ("POST", API + r"/preupload/(?P<rev>[^/]+)$", "preupload"),
        ("POST", API + r"/commit/(?P<rev>[^/]+)$", "commit"),
        ("GET", API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$", "tree"),
        ("POST", API + r"/paths-info/(?P<rev>[^/]+)$", "paths_info"),
        ("POST", r"^/(?:(?P<kind>datasets|spaces)/)?" + R + r"\.git/info/lfs/objects/batch$", "lfs_batch"),
        ("PUT", r"^/_lfs/upload/(?P<ticket>[0-9a-f]+)$", "lfs_upload"),
        ("POST", r"^/_lfs/verify$", "lfs_verify"),
        (
            "GET",
            r"^/(?:(?P<kind>datasets|spaces)/)?" + R + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
            "resolve",
        ),
        (
            "HEAD",
            r"^/(?:(?P<kind>datasets|spaces)/)?" + R + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
            "resolve",
        ),
    ]

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), headers)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HubError(401, INVALID_TOKEN)
        return token.strip()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.body = self._read_body()
        who = "token" if self.headers.get("Authorization") else "anonymous"
        self.hub.requests.append(f"{self.command} {parts.path} ({who})")
        try:
            for method, pattern, name in self.ROUTES:
                if method != self.command:
                    continue
                m = re.match(pattern, parts.path)
                if m:
                    groups = {k: unquote(v) if v is not None else None for k, v in m.groupdict().items()}
                    with self.hub.lock:
                        getattr(self, "do_" + name)(**groups)
                    return
            line = f"{self.command} {self.path}"
            self.hub.unknown_routes.append(line)
            logger.error("local hub: no route for %s", line)
            self._json(404, {"error": f"local hub: no route for {line}"})
        except HubError as exc:
            headers = {"X-Error-Message": exc.message, **exc.headers}
            if exc.code:
                headers["X-Error-Code"] = exc.code
            self._json(exc.status, {"error": exc.message}, headers)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    def _repo(self, kind: str | None, ns: str, name: str) -> tuple[Repo, str | None, str | None]:
        user, role = self.hub.user_of(self._token())
        return self.hub.get_repo(REPO_TYPES[kind or "models"], f"{ns}/{name}", user), user, role

    def _writable(self, kind: str | None, ns: str, name: str) -> tuple[Repo, str]:
        repo, user, role = self._repo(kind, ns, name)
        if not self.hub.can_write(user, role, repo.namespace):
            raise HubError(403, f"You don't have the rights to write to {repo.repo_id}")
        assert user is not None
        return repo, user

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as exc:
            raise HubError(400, f"request body is not JSON: {exc}") from exc

    def _entry_json(self, repo: Repo, commit: Commit, path: str, entry: Entry | None, expand: bool) -> dict:
        out = (
            entry.to_json(path)
            if entry is not None
            else {"type": "directory", "oid": _folder_oid(commit.files, path), "size": 0, "path": path}
        )
        if expand:
            last = self._last_commit(repo, commit, path, entry)
            out["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return out

    @staticmethod
    def _last_commit(repo: Repo, commit: Commit, path: str, entry: Entry | None) -> Commit:
        """The last commit that changed ``path`` (a file, or anything under a folder)."""

        def state(c: Commit) -> Any:
            if entry is not None:
                return c.files.get(path)
            return sorted((p, e.oid) for p, e in c.files.items() if p.startswith(path + "/"))

        current = commit
        mine = state(current)
        while current.parent is not None:
            parent = repo.commits[current.parent]
            if state(parent) != mine:
                return current
            current = parent
        return current

    # ------------------------------------------------------------------ routes: accounts and repos

    def do_whoami(self) -> None:
        user, role = self.hub.user_of(self._token())
        if user is None:
            raise HubError(401, INVALID_TOKEN)
        self._json(
            200,
            {
                "type": "user",
                "name": user,
                "fullname": user,
                "orgs": [{"name": o, "type": "org"} for o in self.hub.orgs.get(user, [])],
                "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": role}},
            },
        )

    def do_agent_harnesses(self) -> None:
        # huggingface_hub fetches this registry for its user agent; the local hub knows no harness
        self._json(200, {"standardEnvVars": [], "harnesses": {}})

    def do_create_repo(self) -> None:
        user, role = self.hub.user_of(self._token())
        body = self._json_body()
        repo_type = body.get("type") or "model"
        namespace = body.get("organization") or user
        name = body.get("name")
        if not name or not re.fullmatch(r"[\w.-]+", name):
            raise HubError(400, f"invalid repository name {name!r}")
        if namespace is None or not self.hub.can_write(user, role, namespace):
            raise HubError(
                403 if user else 401, f"You don't have the rights to create a repo under {namespace!r}"
            )
        repo_id = f"{namespace}/{name}"
        existing = self.hub.repos.get((repo_type, repo_id))
        if existing is not None:
            self._json(409, {"error": "You already created this repo", "url": self.hub.repo_url(existing)})
            return
        private = body.get("private")
        if "visibility" in body:
            private = body["visibility"] == "private"
        repo = Repo(repo_type, repo_id, bool(private), _now())
        self.hub.repos[(repo_type, repo_id)] = repo
        attrs = self.hub.store_regular(GITATTRIBUTES.encode())
        self.hub.new_commit(repo, "main", {".gitattributes": attrs}, "initial commit", "", user or "")
        logger.info("local hub: created %s %s (private=%s)", repo_type, repo_id, repo.private)
        self._json(200, {"url": self.hub.repo_url(repo), "name": repo_id, "id": repo_id})

    def do_validate_yaml(self) -> None:
        body = self._json_body()
        errors, warnings = _validate_card_yaml(body.get("content") or "")
        status = 400 if errors else 200
        self._json(
            status,
            {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]},
        )

    def do_repo_info(self, kind: str, ns: str, name: str, rev: str | None = None) -> None:
        repo, _, _ = self._repo(kind, ns, name)
        commit = self.hub.get_commit(repo, rev or "main")
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=entry.size, blobId=entry.oid)
                if entry.sha256 is not None:
                    sib["lfs"] = {
                        "sha256": entry.sha256,
                        "size": entry.size,
                        "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
                    }
            siblings.append(sib)
        card_data = None
        if "README.md" in commit.files:
            errors, _ = _validate_card_yaml(self.hub.read(commit.files["README.md"]).decode())
            m = re.match(r"^---\s*\n(.*?)\n---", self.hub.read(commit.files["README.md"]).decode(), re.DOTALL)
            if m and not errors:
                card_data = yaml.safe_load(m.group(1))
        self._json(
            200,
            {
                "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.namespace,
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "cardData": card_data,
                "siblings": siblings,
                "usedStorage": sum(e.size for e in commit.files.values()),
            },
        )

    def do_refs(self, kind: str, ns: str, name: str) -> None:
        repo, _, _ = self._repo(kind, ns, name)
        branches = [
            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
            for b, oid in sorted(repo.branches.items())
        ]
        out: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if self.query.get("include_prs"):
            out["pullRequests"] = []
        self._json(200, out)

    def do_commits(self, kind: str, ns: str, name: str, rev: str) -> None:
        repo, _, _ = self._repo(kind, ns, name)
        commit: Commit | None = self.hub.get_commit(repo, rev)
        items = []
        while commit is not None:
            items.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": commit.message,
                    "date": commit.date,
                    "authors": [{"user": commit.author}],
                }
            )
            commit = repo.commits[commit.parent] if commit.parent else None
        self._json(200, items)

    def do_create_branch(self, kind: str, ns: str, name: str, branch: str) -> None:
        repo, _ = self._writable(kind, ns, name)
        if branch in repo.branches:
            raise HubError(409, f"Branch {branch} already exists")
        start = self._json_body().get("startingPoint") or "main"
        repo.branches[branch] = self.hub.get_commit(repo, start).oid
        self._json(200, {})

    # ------------------------------------------------------------------ routes: upload

    def do_preupload(self, kind: str, ns: str, name: str, rev: str) -> None:
        repo, _ = self._writable(kind, ns, name)
        if self.query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the local hub")
        head = self.hub.get_commit(repo, rev)
        files = []
        for f in self._json_body().get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            is_lfs = (
                f["size"] >= LFS_SIZE_THRESHOLD or f["path"].lower().endswith(LFS_SUFFIXES) or b"\0" in sample
            )
            existing = head.files.get(f["path"])
            remote_oid = None
            if existing is not None:
                # huggingface_hub compares this with the sha256 (LFS) or git sha1 (regular) of its file
                remote_oid = existing.sha256 if existing.is_lfs else existing.oid
            files.append(
                {"path": f["path"], "uploadMode": "lfs" if is_lfs else "regular", "shouldIgnore": False,
                 "oid": remote_oid}
            )  # fmt: skip
        self._json(200, {"files": files, "commitOid": head.oid})

    def do_lfs_batch(self, kind: str | None, ns: str, name: str) -> None:
        repo, _ = self._writable(kind, ns, name)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(400, f"the local hub only does LFS uploads, not {body.get('operation')!r}")
        if "basic" not in (body.get("transfers") or ["basic"]):
            raise HubError(400, "the local hub only speaks the 'basic' LFS transfer")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                objects.append(
                    {"oid": str(oid), "size": int(size or 0), "error": {"code": 422, "message": "bad oid"}}
                )
                continue
            if oid in self.hub.lfs:
                objects.append({"oid": oid, "size": size})  # already stored: no actions, nothing to send
                continue
            ticket = secrets.token_hex(16)
            self.hub.tickets[ticket] = (oid, size)
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{self.hub.url}/_lfs/upload/{ticket}", "expires_in": 3600},
                        "verify": {"href": f"{self.hub.url}/_lfs/verify", "expires_in": 3600},
                    },
                }
            )
        logger.debug("local hub: LFS batch for %s: %d object(s)", repo.repo_id, len(objects))
        self._json(
            200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}
        )

    def do_lfs_upload(self, ticket: str) -> None:
        # like a presigned URL: the ticket is the credential, no Authorization header is sent
        if ticket not in self.hub.tickets:
            raise HubError(403, "unknown or used upload ticket")
        oid, size = self.hub.tickets.pop(ticket)
        if len(self.body) != size or hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, f"uploaded content does not match oid {oid} / size {size}")
        self.hub.lfs[oid] = self.body
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def do_lfs_verify(self) -> None:
        user, _ = self.hub.user_of(self._token())
        if user is None:
            raise HubError(401, "verify needs a token")
        body = self._json_body()
        data = self.hub.lfs.get(body.get("oid", ""))
        if data is None or len(data) != body.get("size"):
            raise HubError(404, f"object {body.get('oid')} not uploaded")
        self._json(200, {})

    def do_commit(self, kind: str, ns: str, name: str, rev: str) -> None:
        repo, user = self._writable(kind, ns, name)
        if self.query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the local hub")
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound")
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        head = repo.commits[repo.branches[rev]]
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"{path}: unsupported encoding {value.get('encoding')!r}")
                files[path] = self.hub.store_regular(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                sha = value.get("oid")
                if value.get("algo") != "sha256" or sha not in self.hub.lfs:
                    raise HubError(422, f"{path}: LFS object {sha} was not uploaded")
                size = len(self.hub.lfs[sha])
                if value.get("size") is not None and value["size"] != size:
                    raise HubError(422, f"{path}: LFS size {value['size']} != uploaded {size}")
                files[path] = Entry(size=size, oid=git_blob_oid(lfs_pointer(sha, size)), sha256=sha)
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                gone = [p for p in files if p.startswith(prefix)]
                if not gone:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        commit = self.hub.new_commit(
            repo, rev, files, header.get("summary", ""), header.get("description", ""), user
        )
        logger.info("local hub: %s@%s <- commit %s (%s)", repo.repo_id, rev, commit.oid[:8], commit.title)
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub.repo_url(repo)}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )

    # ------------------------------------------------------------------ routes: read

    def do_tree(self, kind: str, ns: str, name: str, rev: str, path: str | None = None) -> None:
        repo, _, _ = self._repo(kind, ns, name)
        commit = self.hub.get_commit(repo, rev)
        path = (path or "").strip("/")
        if path and path in commit.files:
            raise HubError(404, f"{path} is a file, not a folder", "EntryNotFound")
        if path and not any(p.startswith(path + "/") for p in commit.files):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        entries = _tree_entries(commit.files, path, recursive)
        start = int(self.query.get("cursor", ["0"])[0])
        page = entries[start : start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(entries):
            base = f"{self.hub.url}{urlsplit(self.path).path}"
            nxt = f"{base}?recursive={str(recursive).lower()}&expand={str(expand).lower()}&cursor={start + len(page)}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._json(200, [self._entry_json(repo, commit, p, e, expand) for p, e in page], headers)

    def do_paths_info(self, kind: str, ns: str, name: str, rev: str) -> None:
        repo, _, _ = self._repo(kind, ns, name)
        commit = self.hub.get_commit(repo, rev)
        form = parse_qs(self.body.decode(), keep_blank_values=True)
        if not form and self.body.strip().startswith(b"{"):
            form = {k: v if isinstance(v, list) else [v] for k, v in self._json_body().items()}
        expand = str(form.get("expand", ["false"])[0]).lower() in ("1", "true")
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                out.append(self._entry_json(repo, commit, path, commit.files[path], expand))
            elif path == "" or any(p.startswith(path + "/") for p in commit.files):
                out.append(self._entry_json(repo, commit, path, None, expand))
        self._json(200, out)

    def do_resolve(self, kind: str | None, ns: str, name: str, rev: str, path: str) -> None:
        repo, _, _ = self._repo(kind, ns, name)
        commit = self.hub.get_commit(repo, rev)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = self.hub.read(entry)
        etag = entry.sha256 or entry.oid
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{etag}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
        }
        if entry.is_lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry.size)})
        status = 200
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                raise HubError(400, f"unsupported Range {rng!r}")
            if m.group(1):
                first = int(m.group(1))
                last = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            else:  # suffix range: the last N bytes
                first, last = max(0, len(data) - int(m.group(2))), len(data) - 1
            if first >= len(data) or first > last:
                raise HubError(
                    416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            data, status = data[first : last + 1], 206
        headers["Content-Length"] = str(len(data))
        self._send(status, data, headers)


def main() -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Run the local Hub stand-in on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", action="append", default=[], help="TOKEN:USER:ROLE (role read or write)")
    args = parser.parse_args()
    tokens = {}
    for spec in args.token:
        token, user, role = spec.split(":")
        tokens[token] = (user, role)
    logging.basicConfig(level=logging.INFO)
    hub = LocalHub(tokens).start(args.port)
    print(f"HF_ENDPOINT={hub.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
