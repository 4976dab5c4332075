"""Served files stay inside their run folder: a symlinked folder, a symlinked file (out of RUN_ROOT, and to a
picture of the same run), `..` after URL decoding, absolute paths (outside, and pointing back inside the run),
hidden folders, through every route that serves a file's contents (a picture, the report's pictures list and
the metrics it reads, the page's static files). Each case is one that only one of the checks refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason="genzoo serve needs the `serve` extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="the API tests use FastAPI's TestClient, which needs httpx")
from fastapi.testclient import TestClient  # noqa: E402

from genzoo import pretrained, runs  # noqa: E402
from genzoo.serve.app import create_app  # noqa: E402
from genzoo.serve.inputs import Catalog, InputError, find_runs, run_picture  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # served as bytes: no need to be a whole image
MARKER = b"TOP-SECRET-BYTES"
CONFIG = {"model": "ae", "hparams": {}, "train": {}, "data": "embedded", "seed": 0}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("containment")
    root, outside = base / "runs", base / "outside"
    (root / "run" / "samples").mkdir(parents=True)
    outside.mkdir()
    (root / "run" / runs.CONFIG).write_text(json.dumps(CONFIG))
    (root / "run" / "samples" / "grid.png").write_bytes(PNG)
    (root / "run" / ".hidden").mkdir()
    (root / "run" / ".hidden" / "x.png").write_bytes(PNG)
    (outside / "secret.png").write_bytes(PNG + MARKER)
    (outside / "metrics.json").write_text(json.dumps({"leaked_figure": 4242}))
    (outside / "metrics.jsonl").write_text(json.dumps({"step": 1, "leaked_curve": 4343}) + "\n")
    (root / "run" / "link-out.png").symlink_to(outside / "secret.png")  # a symlinked file, out of RUN_ROOT
    (root / "run" / "alias.png").symlink_to(root / "run" / "samples" / "grid.png")  # a symlinked file, inside
    (root / "run" / "out").symlink_to(outside, target_is_directory=True)  # a symlinked folder in a run
    # a second run whose metrics files are symlinks out of RUN_ROOT
    (root / "leaky").mkdir()
    (root / "leaky" / runs.CONFIG).write_text(json.dumps(CONFIG))
    (root / "leaky" / runs.METRICS).symlink_to(outside / "metrics.json")
    (root / "leaky" / runs.METRICS_LOG).symlink_to(outside / "metrics.jsonl")
    # a run folder that is a symlink, and one whose config.json is
    (root / "linked").symlink_to(root / "run", target_is_directory=True)
    (root / "fake").mkdir()
    (root / "fake" / runs.CONFIG).symlink_to(root / "run" / runs.CONFIG)
    return root


@pytest.fixture(scope="module")
def client(root):
    with TestClient(create_app(root)) as client:
        yield client


def test_only_real_run_folders_are_runs(root):
    assert set(find_runs(root)) == {"run", "leaky"}


def test_runs_are_found_three_folders_deep_at_most_and_never_in_hidden_folders(tmp_path):
    """RUN_ROOT/a/b/c/config.json is the deepest run found; a run in a hidden folder, at any depth, is not one."""
    for name in ("top", "a/b/c", "a/b/c/d", ".cache/r", "a/.old", "a/b/.tmp/r", ".x"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / runs.CONFIG).write_text(json.dumps(CONFIG))
    root = tmp_path.resolve()
    assert find_runs(tmp_path) == {"top": root / "top", "a/b/c": root / "a" / "b" / "c"}


def test_the_catalog_is_the_shipped_models_and_the_run_folders_and_nothing_else(tmp_path, monkeypatch):
    """Each of the four catalogs (shipped or not, with a RUN_ROOT or not) written out; a folder under RUN_ROOT named
    like a shipped model is never served as one; a name outside the catalog is a 404 that repeats it."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": {"gan": {}, "vae": {}}}))
    monkeypatch.setattr(pretrained, "MANIFEST", manifest)
    root = (tmp_path / "runs").resolve()
    for name in ("a", "b/c", "pretrained:gan"):
        (root / name).mkdir(parents=True)
        (root / name / runs.CONFIG).write_text(json.dumps(CONFIG))
    shipped = {"pretrained:gan": pretrained.ROOT / "gan", "pretrained:vae": pretrained.ROOT / "vae"}
    folders = {"a": root / "a", "b/c": root / "b" / "c"}
    assert Catalog(root).runs() == {**shipped, **folders}
    assert Catalog(root, shipped=False).runs() == folders
    assert Catalog(None).runs() == shipped
    assert Catalog(None, shipped=False).runs() == {}
    assert Catalog(root).folder("pretrained:gan") == pretrained.ROOT / "gan"
    assert Catalog(root).folder("b/c") == root / "b" / "c"
    both, zoo = f"the shipped zoo (read-only) and {root}", "the shipped zoo (read-only)"
    for catalog, name, serves in ((Catalog(root, shipped=False), "pretrained:gan", str(root)),
                                  (Catalog(root), "pretrained:dcgan", both), (Catalog(root), "c", both),
                                  (Catalog(root), "b/../a", both), (Catalog(root), str(root / "a"), both),
                                  (Catalog(None), "a", zoo)):
        message = f"no run named {name!r} in {serves}; the names are the runs GET /api/runs lists"
        with pytest.raises(InputError, match=f"^{re.escape(message)}$") as error:
            catalog.folder(name)
        assert error.value.status == 404


NOT_RELATIVE = "picture {!r}: give a path relative to the run folder, without '..'"
NOT_THERE = "no picture {!r} in this run"
NOT_A_PICTURE = "{!r}: only pictures (.png, .gif, .jpg, .jpeg) are served from a run"


@pytest.mark.parametrize(("relative", "message"), [
    ("link-out.png", NOT_THERE),  # symlinked file to outside RUN_ROOT
    ("alias.png", NOT_THERE),  # symlinked file, even to a picture of the same run
    ("out/secret.png", NOT_THERE),  # through a symlinked folder
    ("samples/../samples/grid.png", NOT_RELATIVE),  # `..` that stays inside: refused all the same
    ("../leaky/metrics.json", NOT_RELATIVE),
    (".hidden/x.png", NOT_RELATIVE),
    ("config.json", NOT_A_PICTURE),
    ("samples", NOT_THERE),
    ("", NOT_RELATIVE),
])
def test_run_picture_refuses(root, relative, message):
    with pytest.raises(InputError, match=f"^{re.escape(message.format(relative))}$") as error:
        run_picture(root / "run", relative)
    assert error.value.status == 404


def test_run_picture_refuses_an_absolute_path_even_into_the_run(root):
    inside = str((root / "run" / "samples" / "grid.png").resolve())
    with pytest.raises(InputError, match="relative to the run folder"):
        run_picture(root / "run", inside)
    assert run_picture(root / "run", "samples/grid.png") == (root / "run" / "samples" / "grid.png").resolve()


def paths(root: Path) -> list[str]:
    inside = str((root / "run" / "samples" / "grid.png").resolve())
    return [
        "/api/runs/run/files/link-out.png",
        "/api/runs/run/files/alias.png",
        "/api/runs/run/files/out/secret.png",
        "/api/runs/run/files/out%2Fsecret.png",
        "/api/runs/run/files/samples/%2E%2E/samples/grid.png",
        "/api/runs/run/files/samples%2F..%2Fsamples%2Fgrid.png",
        "/api/runs/run/files/%2E%2E%2F..%2Foutside%2Fsecret.png",
        "/api/runs/run/files/.hidden/x.png",
        "/api/runs/run/files/" + quote(inside, safe=""),  # absolute, pointing back inside the run
        "/api/runs/run/files/" + quote(inside),
        "/api/runs/linked/files/samples/grid.png",  # a symlinked run folder
        "/api/runs/fake/files/samples/grid.png",
        "/api/runs/linked/report",
        "/api/runs/%2E%2E%2Foutside/report",
    ]


def test_every_file_route_refuses_what_leaves_the_run(client, root):
    for path in paths(root):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code, response.text[:200])
        assert MARKER not in response.content


def test_the_static_route_serves_the_package_only(client):
    assert client.get("/static/app.js").status_code in (200, 404)  # whichever the page ships, never a traceback
    for path in ("/static/../serve/app.py", "/static/%2E%2E/app.py", "/static/%2E%2E%2F__init__.py",
                 "/static/" + quote(str(Path(__file__).resolve()), safe="")):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert b"import" not in response.content


def test_the_report_lists_only_pictures_inside_and_reads_no_metrics_through_a_symlink(client, root):
    report = client.get("/api/runs/run/report").json()
    assert report["pictures"] == ["samples/grid.png"]
    leaky = client.get("/api/runs/leaky/report")
    assert leaky.status_code == 200
    assert b"leaked" not in leaky.content and b"4242" not in leaky.content and b"4343" not in leaky.content
    assert client.get("/api/runs/run/files/samples/grid.png").content == PNG
