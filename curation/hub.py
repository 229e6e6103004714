"""Push a splits directory to the Hugging Face Hub.

:func:`push_splits` builds the same ``DatasetDict`` as :func:`curation.export.export_hf` and
pushes it with the real ``DatasetDict.push_to_hub`` (shards cut and named the same way, images
embedded), then commits the dataset card and the pass-rate histogram on top. The card's
``dataset_info`` and ``configs`` are the ones ``push_to_hub`` wrote, read back from the Hub, so
they describe exactly what was uploaded.

A second push to the same repository updates it in place: ``push_to_hub`` deletes the shards
of the previous push that the new one does not overwrite, and the card is replaced.

The token is the ``token`` argument, else whatever ``huggingface_hub`` resolves (``HF_TOKEN``,
then the saved ``hf auth login``); the endpoint is ``HF_ENDPOINT`` (default huggingface.co).
"""

from __future__ import annotations

import logging
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.export import (
    CARD_FILE,
    DATA_DIR,
    DEFAULT_MAX_SHARD_SIZE,
    HISTOGRAM_FILE,
    ExportReport,
    SplitExport,
    build_hf_dataset_dict,
    card_args,
    check_split_names,
    difficulty_and_stats,
    num_shards_for,
    split_tasks,
)
from curation.splits_dir import ALL_SPLITS, read_splits_dir

if TYPE_CHECKING:
    from huggingface_hub.errors import HfHubHTTPError

    from data_cards.render import CardOptions

logger = logging.getLogger(__name__)

DATA_COMMIT_MESSAGE = "Upload dataset (pebr curate push)"
CARD_COMMIT_MESSAGE = "Update dataset card and pass-rate histogram (pebr curate push)"


class HubAuthError(ValueError):
    """The Hub refused the token (missing, invalid, or without write access)."""


@dataclass(frozen=True)
class PushReport:
    """What a push did: the two commits and the dataset as it now is on the Hub."""

    repo_id: str
    revision: str
    endpoint: str
    url: str
    #: the commit ``push_to_hub`` made (the data and its metadata)
    data_commit: str
    #: the commit with the rendered card and histogram (the head of ``revision``)
    card_commit: str
    export: ExportReport

    @property
    def rows(self) -> dict[str, int]:
        return {s.name: s.rows for s in self.export.splits}


def _auth_error(exc: HfHubHTTPError, endpoint: str, repo_id: str) -> HubAuthError | None:
    status = exc.response.status_code if exc.response is not None else None
    said = exc.server_message or str(exc).splitlines()[0]
    if status == 401:
        return HubAuthError(
            f"the Hub at {endpoint} refused the token (401: {said}); set HF_TOKEN or run `hf auth login`"
        )
    if status == 403:
        return HubAuthError(f"the token has no write access to {repo_id} on {endpoint} (403: {said})")
    return None


def _push_command(splits_dir: Path, repo_id: str, private: bool, revision: str | None, names: Sequence[str],
                  max_shard_size: int | str, card_options: CardOptions | None) -> str:  # fmt: skip
    argv = ["pebr", "curate", "push", "--splits", str(splits_dir), "--repo-id", repo_id]
    if private:
        argv.append("--private")
    if revision:
        argv += ["--revision", revision]
    if tuple(names) != ALL_SPLITS:
        for n in names:
            argv += ["--only", n]
    if max_shard_size != DEFAULT_MAX_SHARD_SIZE:
        argv += ["--max-shard-size", str(max_shard_size)]
    return shlex.join(argv + card_args(card_options))


def push_splits(
    splits_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    splits: Sequence[str] = ALL_SPLITS,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    card_options: CardOptions | None = None,
) -> PushReport:
    """Push the splits of ``splits_dir`` to the dataset repository ``repo_id`` and render its card.

    ``private`` applies when the repository is created (an existing one keeps its visibility);
    ``revision`` is a branch, created from ``main`` when missing.
    """
    from datasets import DatasetDict
    from huggingface_hub import CommitOperationAdd, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    from data_cards.render import CardOptions, parse_card, pass_rate_histogram, render_card

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo id must be ORG/NAME, got {repo_id!r}")
    if constants.HF_HUB_OFFLINE:
        raise ValueError(
            "HF_HUB_OFFLINE is set: pushing needs the Hub; unset it (or use `pebr curate export`)"
        )
    names = check_split_names(splits)
    run = read_splits_dir(splits_dir)
    difficulty, stats = difficulty_and_stats(run)
    endpoint = constants.ENDPOINT
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or constants.DEFAULT_REVISION
    with tempfile.TemporaryDirectory(prefix="pebr-push-") as tmp:
        datasets_, skipped = build_hf_dataset_dict(run, names, difficulty, Path(tmp))
        # the same shard count as a local export, so both layouts name their files alike
        num_shards = {n: num_shards_for(ds, max_shard_size) for n, ds in datasets_.items()}
        try:
            data_commit = DatasetDict(datasets_).push_to_hub(
                repo_id,
                private=private,
                token=token,
                revision=revision,
                num_shards=num_shards,
                commit_message=DATA_COMMIT_MESSAGE,
            )
        except HfHubHTTPError as exc:
            auth = _auth_error(exc, endpoint, repo_id)
            if auth is not None:
                raise auth from exc
            raise
        del datasets_
        logger.info("pushed the data of %s to %s@%s: commit %s", run.root, repo_id, branch, data_commit.oid)

        # what push_to_hub wrote: its README metadata and the shard files
        card_file = api.hf_hub_download(repo_id, CARD_FILE, repo_type="dataset", revision=data_commit.oid)
        pushed_meta, _ = parse_card(Path(card_file).read_text(encoding="utf-8"))
        tree = api.list_repo_tree(
            repo_id, path_in_repo=DATA_DIR, repo_type="dataset", revision=data_commit.oid, recursive=True
        )
        shard_files = sorted(f.path for f in tree if getattr(f, "size", None) is not None)
        split_infos = pushed_meta["dataset_info"]["splits"]
        export_report = ExportReport(
            format="hf",
            location=f"{endpoint}/datasets/{repo_id}",
            splits=tuple(
                SplitExport(
                    s["name"],
                    int(s["num_examples"]),
                    tuple(f for f in shard_files if f.split("/")[-1].startswith(s["name"] + "-")),
                    s.get("num_bytes"),
                )
                for s in split_infos
            ),
            skipped=skipped,
            dataset_info=pushed_meta["dataset_info"],
            configs=pushed_meta["configs"],
            command=_push_command(run.root, repo_id, private, revision, names, max_shard_size, card_options),
            splits_dir=str(run.root),
        )
        options = card_options or CardOptions()
        if options.repo_id is None:
            options = replace(options, repo_id=repo_id)
        card = render_card(
            run.report,
            export_report,
            run.funnel,
            stats=stats,
            options=options,
            funnel_note=run.funnel_note,
            split_tasks=split_tasks(run, [s.name for s in export_report.splits]),
        )
        png = pass_rate_histogram(stats, Path(tmp) / "histogram.png")
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card.encode("utf-8")),
            CommitOperationAdd(path_in_repo=HISTOGRAM_FILE, path_or_fileobj=png.read_bytes()),
        ]
        card_commit = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=CARD_COMMIT_MESSAGE,
            repo_type="dataset",
            revision=revision,
            # the card describes exactly the data commit: fail rather than describe another one
            parent_commit=data_commit.oid,
        )
    logger.info("card of %s@%s: commit %s", repo_id, branch, card_commit.oid)
    return PushReport(
        repo_id=repo_id,
        revision=branch,
        endpoint=endpoint,
        url=export_report.location,
        data_commit=data_commit.oid,
        card_commit=card_commit.oid,
        export=export_report,
    )
