"""``ragpress ingest`` against a real server with keys required: every file its own document, re-ingesting
converges on the tree, collisions send nothing, thousands of files go in batches; and the server commands
(jobs, pipelines, query) work with the key, by flag or environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ServerProcess, models_dir
from typer.testing import CliRunner, Result

from ragpress.cli import app
from ragpress.pipelines.loader import builtin_yaml

pytestmark = pytest.mark.integration


def ragpress(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process."""
    return subprocess.run([sys.executable, "-m", "ragpress", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("cli-server")
    process = ServerProcess(home, env={"RAGPRESS_AUTH": "required"})
    try:
        process.wait_ready()
        created = ragpress("keys", "create", "--tenant", "acme", env={"RAGPRESS_HOME": str(home)})
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        http = httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        yield {"process": process, "key": key, "http": http,
               "env": {"RAGPRESS_URL": process.url, "RAGPRESS_API_KEY": key}}
    finally:
        process.stop()


def cli(server: dict[str, Any], *args: str, key: bool = True) -> Result:
    """The command run in this process against the server, the key in RAGPRESS_API_KEY unless ``key`` is False."""
    env = {**server["env"], **({} if key else {"RAGPRESS_API_KEY": None})}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def said(result: Result) -> str:
    return " ".join(result.output.split())


def listed(server: dict[str, Any], collection: str, limit: int = 2) -> dict[str, dict[str, Any]]:
    """The collection's documents by id, through the listing route, page by page."""
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = server["http"].get(f"/v1/collections/{collection}/documents",
                                  params={"limit": limit, **({"after": after} if after else {})}).json()
        found.update({d["id"]: d for d in page["documents"]})
        after = page["next_after"]
        if not after:
            return found


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


TREE = {"a/index.html": "<html><body><p>The alpha page is about apples from Kent.</p></body></html>",
        "b/index.html": "<html><body><p>The beta page is about bananas from Madeira.</p></body></html>",
        "a/sub/index.md": "# Sub\n\nCherries grow in the sub folder's orchard.\n",
        "a/logo.png": "not really a png"}


def test_every_file_of_a_tree_with_duplicate_basenames_is_its_own_document(server: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    tree = write(tmp_path / "site", TREE)
    result = cli(server, "ingest", str(tree), "-c", "dupes")
    assert result.exit_code == 0, result.output
    assert "3 indexed, 0 unchanged, 0 failed, 1 skipped" in said(result)
    assert "1 not supported: 1 .png" in said(result)
    documents = listed(server, "dupes")
    assert sorted(documents) == ["site/a/index.html", "site/a/sub/index.md", "site/b/index.html"]
    assert all(d["status"] == "indexed" and d["units"] > 0 for d in documents.values())
    hits = server["http"].post("/v1/collections/dupes/query", json={"query": "bananas from Madeira",
                                                                   "generate": False}).json()
    assert hits["documents"][0]["doc_id"] == "site/b/index.html"


def test_re_ingesting_a_changed_tree_with_delete_missing_matches_it_exactly(server: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    tree = write(tmp_path / "site", TREE)
    loose = write(tmp_path, {"notes.txt": "A file given on its own is named by its file name."}) / "notes.txt"
    assert cli(server, "ingest", str(tree), str(loose), "-c", "sync").exit_code == 0
    before = listed(server, "sync")

    again = cli(server, "ingest", str(tree), "-c", "sync", "--delete-missing")
    assert again.exit_code == 0 and "0 indexed, 3 unchanged, 0 failed" in said(again)
    assert "removed" not in said(again) and listed(server, "sync") == before

    (tree / "a/index.html").write_text("<p>The alpha page now speaks of apricots.</p>")
    (tree / "a/sub/index.md").unlink()
    (tree / "b/new.md").write_text("A new page about figs.")
    changed = cli(server, "ingest", str(tree), "-c", "sync", "--delete-missing", "--verbose")
    assert changed.exit_code == 0, changed.output
    assert "2 indexed, 1 unchanged, 0 failed" in said(changed)
    assert "removed 1 document(s) whose files are gone: site/a/sub/index.md" in said(changed)
    after = listed(server, "sync")
    # the folder's files exactly, and the file given on its own untouched: it is not under the folder's prefix
    assert sorted(after) == ["notes.txt", "site/a/index.html", "site/b/index.html", "site/b/new.md"]
    assert after["site/a/index.html"]["content_hash"] != before["site/a/index.html"]["content_hash"]
    assert after["site/b/index.html"] == before["site/b/index.html"]
    hits = server["http"].post("/v1/collections/sync/query", json={"query": "cherries in the orchard",
                                                                   "generate": False, "top_k": 10}).json()
    assert "site/a/sub/index.md" not in {d["doc_id"] for d in hits["documents"]}


def test_two_folders_with_the_same_name_are_refused_before_anything_is_sent(server: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    first = write(tmp_path / "one" / "docs", {"index.html": "<p>one</p>"})
    second = write(tmp_path / "two" / "docs", {"index.html": "<p>two</p>", "other.txt": "fine"})
    jobs_before = len(server["http"].get("/v1/jobs").json()["jobs"])
    result = cli(server, "ingest", str(first), str(second), "-c", "clash")
    assert result.exit_code == 1
    assert f"'docs/index.html': {first / 'index.html'} and {second / 'index.html'}" in said(result)
    assert server["http"].get("/v1/collections/clash").status_code == 404
    assert len(server["http"].get("/v1/jobs").json()["jobs"]) == jobs_before


def test_jobs_are_listed_and_shown_by_a_short_id_with_the_key(server: dict[str, Any], tmp_path: Path) -> None:
    assert cli(server, "ingest", str(write(tmp_path / "j", {"x.txt": "Jobs are listed."})), "-c", "jobs").exit_code == 0
    job_id = server["http"].get("/v1/jobs").json()["jobs"][0]["job_id"]
    listing = cli(server, "jobs", "list")
    assert listing.exit_code == 0 and job_id in listing.output
    shown = cli(server, "jobs", "show", job_id[:8])
    assert shown.exit_code == 0 and said(shown).startswith(f"{job_id} succeeded 1/1 done")


def test_without_the_key_a_command_says_how_to_pass_one(server: dict[str, Any]) -> None:
    for command in (["jobs", "list"], ["query", "anything", "-c", "jobs"], ["pipeline", "list"]):
        refused = cli(server, *command, key=False)
        assert refused.exit_code == 1, command
        assert "the server needs an API key: pass --api-key KEY or set RAGPRESS_API_KEY" in said(refused)
    by_flag = cli(server, "jobs", "list", "--api-key", server["key"], key=False)
    assert by_flag.exit_code == 0
    wrong = cli(server, "jobs", "list", "--api-key", "rp_revoked-or-never-made")
    assert wrong.exit_code == 1 and "refused the API key (unknown or revoked)" in said(wrong)


def test_pipelines_are_listed_versioned_rolled_back_and_named_by_a_query(server: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    yaml = builtin_yaml("plain")
    (tmp_path / "v1.yaml").write_text(yaml)
    (tmp_path / "v2.yaml").write_text(yaml.replace("top_k: 4", "top_k: 2", 1))
    assert "top_k: 4" in yaml
    assert cli(server, "pipeline", "apply", "mine", str(tmp_path / "v1.yaml")).exit_code == 0
    assert cli(server, "pipeline", "apply", "mine", str(tmp_path / "v2.yaml")).exit_code == 0
    assert "mine" in said(cli(server, "pipeline", "list"))
    versions = cli(server, "pipeline", "versions", "mine").output
    assert [line.split("│")[1].strip() for line in versions.splitlines() if line.startswith("│")] == ["1", "2"]
    rolled = cli(server, "pipeline", "rollback", "mine", "1")
    assert rolled.exit_code == 0 and "rolled back mine to version 1, saved as version 3" in said(rolled)
    assert "top_k: 4" in cli(server, "pipeline", "show", "mine").output

    cli(server, "ingest", str(write(tmp_path / "p", {"kiwi.txt": "Kiwis ripen in May."})), "-c", "piped")
    answered = cli(server, "query", "When do kiwis ripen?", "-c", "piped", "--pipeline", "mine", "--no-generate")
    assert answered.exit_code == 0 and "p/kiwi.txt" in answered.output
    unknown = cli(server, "query", "When?", "-c", "piped", "--pipeline", "nope", "--no-generate")
    assert unknown.exit_code == 1 and "No pipeline 'nope'" in said(unknown)


@pytest.mark.slow
def test_a_folder_of_2500_files_goes_in_batches_with_a_key_from_the_environment(server: dict[str, Any],
                                                                               tmp_path: Path) -> None:
    notes = {f"part{n // 100:02d}/note{n:04d}.txt": f"Note {n} records reading number {n * 7919 % 99991}."
             for n in range(2_500)}
    notes["part12/note1234.txt"] = "The lighthouse keeper's parrot is called Bartholomew."
    folder = write(tmp_path / "notes", notes)
    env = {**server["env"], "RAGPRESS_MODELS_DIR": str(models_dir())}
    done = ragpress("ingest", str(folder), "-c", "many", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "collection 'many': 2,500 indexed, 0 unchanged, 0 failed, 0 skipped (3 jobs)" in done.stdout
    assert len(listed(server, "many", limit=1000)) == 2_500
    asked = ragpress("query", "What is the lighthouse keeper's parrot called?", "-c", "many", "--no-generate",
                     "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["documents"][0]["doc_id"] == "notes/part12/note1234.txt"
