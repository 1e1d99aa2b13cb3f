"""Every command checks every name it will write, once and before anything is trained or written:
report, merge, ablate (and its --dry-run, which refuses alike) and slurm never write over a user's
file, a file changed since dropcli wrote it, or through a link; a shard's study.json is no study's
root; a study trains only on the data its study.json records."""

import dataclasses
import json
import shutil

import pytest
from conftest import check_error, synthetic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic_study import write_study
from test_cli_studies import BASE, GRID, TINY, snapshot
from typer.testing import CliRunner

from dropcli.ablate import run_study
from dropcli.cli import app
from dropcli.data import MNIST_SHA256
from dropcli.device import resolve_device
from dropcli.errors import DropcliError, StudyMismatch
from dropcli.owned import MANIFEST, read_manifest
from dropcli.plan import make_plan, open_study
from dropcli.report import build_report
from dropcli.study import REPORT_FILES, TABLES, claim

runner = CliRunner()
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KINDS = st.sampled_from(["unlisted file", "changed file", "link", "folder"])


def plant(folder, name, kind, outside):
    """Put the user's `kind` of entry at folder/name (a file dropcli's manifest lists is edited in place)."""
    path = folder / name
    if kind == "changed file" and path.is_file():
        path.write_bytes(path.read_bytes() + b"\nedited by hand")
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "link":
        path.symlink_to(outside)
    elif kind == "folder":
        path.mkdir()
        (path / "mine.txt").write_text("the user's")
    else:
        path.write_text("the user's own")
    manifest = read_manifest(folder)
    if manifest and kind != "changed file":  # the user's own: not in dropcli's manifest
        manifest = {n: v for n, v in manifest.items() if n.rstrip("/") != name}
        (folder / MANIFEST).write_text(json.dumps({"format": "dropcli-manifest/2", "files": {
            n: None if v is None else [c.model_dump() for c in v] for n, v in manifest.items()}}))


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A synthetic study after one report: every output is dropcli's, recorded with its content."""
    out = write_study(tmp_path_factory.mktemp("reported") / "s")
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    return out


@SETTINGS
@given(planted=st.lists(st.tuples(st.sampled_from(REPORT_FILES), KINDS), min_size=1, max_size=3, unique_by=lambda t: t[0]))
def test_report_refuses_any_output_it_may_not_replace_before_writing_anything(tmp_path_factory, reported, planted):
    out = tmp_path_factory.mktemp("case") / "s"
    shutil.copytree(reported, out, symlinks=True)
    outside = out.parent / "outside.txt"
    outside.write_text("outside")
    for name, kind in planted:
        plant(out, name, kind, outside)
    before = snapshot(out)
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 and str(out) in result.stderr
    assert snapshot(out) == before and outside.read_text() == "outside"


def cli_study(out):
    """A study folder claimed with the identity TINY's command makes (bundled MNIST)."""
    plan = make_plan(dataclasses.replace(GRID, seeds=(777, 778)), BASE, out, data={"name": "mnist", "sha256": MNIST_SHA256})
    with open_study(plan):
        pass
    return out


@SETTINGS
@given(name=st.sampled_from(TABLES[1:] + REPORT_FILES), kind=st.sampled_from(["unlisted file", "link", "folder"]))
def test_ablate_and_its_dry_run_refuse_alike_before_training(tmp_path_factory, name, kind):
    out = cli_study(tmp_path_factory.mktemp("case") / "s")
    assert runner.invoke(app, [*TINY, "--out", str(out), "--dry-run"]).exit_code == 0  # the same study
    outside = out.parent / "outside.txt"
    outside.write_text("outside")
    plant(out, name, kind, outside)
    before = snapshot(out)
    dry = runner.invoke(app, [*TINY, "--out", str(out), "--dry-run"])
    run = runner.invoke(app, [*TINY, "--out", str(out)])
    code = 1 if kind == "link" else 2
    check_error(dry, code, str(out / name))
    check_error(run, code, str(out / name))
    assert dry.stderr == run.stderr and snapshot(out) == before  # nothing trained, nothing written


@SETTINGS
@given(name=st.sampled_from(TABLES[1:] + REPORT_FILES), kind=st.sampled_from(["unlisted file", "link", "folder"]))
def test_a_shard_and_its_dry_run_refuse_what_merge_could_not_write_before_training(tmp_path_factory, name, kind):
    """A user's file where merge will write the whole study's tables or report is refused by every
    shard's run (and its preview) before it trains, not by merge after the last shard (a study.json
    there is read, and refused, as the study's)."""
    out = tmp_path_factory.mktemp("case") / "s"
    plan = make_plan(dataclasses.replace(GRID, seeds=(777, 778)), BASE, out, shard=(1, 2),
                     data={"name": "mnist", "sha256": MNIST_SHA256})
    with open_study(plan):  # shard 1 claimed: the study's folder is dropcli's, with shards/ in it
        pass
    outside = out.parent / "outside.txt"
    outside.write_text("outside")
    plant(out, name, kind, outside)
    before = snapshot(out)
    dry = runner.invoke(app, [*TINY, "--out", str(out), "--shard", "2/2", "--dry-run"])
    run = runner.invoke(app, [*TINY, "--out", str(out), "--shard", "2/2"])
    code = 1 if kind == "link" else 2
    check_error(dry, code, str(out / name))
    check_error(run, code, str(out / name))
    assert dry.stderr == run.stderr and snapshot(out) == before


@SETTINGS
@given(name=st.sampled_from(["array-1.sbatch", "merge.sbatch", "submit.sh", "logs", "submitted.json"]),
       kind=st.sampled_from(["unlisted file", "changed file", "link", "folder"]),
       submit=st.booleans())
def test_slurm_never_writes_over_a_users_file_or_through_a_link(tmp_path_factory, name, kind, submit):
    out = tmp_path_factory.mktemp("case") / "s"
    args = ["slurm", *TINY[1:-2], "--out", str(out), "--shards", "2"]
    assert runner.invoke(app, args).exit_code == 0  # scripts, logs/ and the study, all dropcli's
    if name == "submitted.json" and kind == "changed file":
        kind = "unlisted file"  # written only by --submit
    outside = out.parent / "outside"
    outside.mkdir()
    (outside / "merge.out").write_text("outside")
    plant(out / "slurm", name, kind, outside if name == "logs" else outside / "merge.out")
    before = snapshot(out)
    result = runner.invoke(app, args + (["--submit"] if submit else []))
    if name == "submitted.json" and not submit:
        assert result.exit_code == 0  # not a name this command writes
    else:
        assert result.exit_code in (1, 2) and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1 and str(out / "slurm" / name) in result.stderr
        assert snapshot(out) == before
    assert (outside / "merge.out").read_text() == "outside" and sorted(p.name for p in outside.iterdir()) == ["merge.out"]


def test_slurm_refuses_a_slurm_folder_that_is_a_link(tmp_path):
    out, elsewhere = tmp_path / "s", tmp_path / "elsewhere"
    args = ["slurm", *TINY[1:-2], "--out", str(out), "--shards", "2"]
    assert runner.invoke(app, args).exit_code == 0
    shutil.move(out / "slurm", elsewhere)
    (out / "slurm").symlink_to(elsewhere)
    before = snapshot(elsewhere)
    check_error(runner.invoke(app, args), 1, f"{out / 'slurm'} is a symbolic link")
    check_error(runner.invoke(app, [*args, "--submit"]), 1, f"{out / 'slurm'} is a symbolic link")
    assert snapshot(elsewhere) == before


def test_a_shards_study_json_is_no_studys_root(tmp_path):
    with open_study(make_plan(GRID, BASE, tmp_path / "s", (1, 2))):
        pass
    root = tmp_path / "copied"
    root.mkdir()
    shutil.copy(tmp_path / "s" / "shards" / "1-of-2" / "study.json", root / "study.json")
    for fresh in (False, True):
        with pytest.raises(StudyMismatch, match=r"copied/study.json belongs to shard 1 of 2, not to a whole study"):
            make_plan(GRID, BASE, root, fresh=fresh)
    (root / "runs.csv").write_text((tmp_path / "s" / "shards" / "1-of-2" / "study.json").read_text())
    with pytest.raises(DropcliError, match=r"belongs to shard 1 of 2, not to a whole study; report the study's own"):
        build_report(root)
    assert sorted(p.name for p in root.iterdir()) == ["runs.csv", "study.json"]


@pytest.mark.parametrize("loaded", ["0" * 64, "f" * 64])
def test_a_study_trains_only_on_the_data_its_study_json_records(tmp_path, loaded):
    plan = make_plan(GRID, BASE, tmp_path / "s", data={"name": "mnist", "sha256": "a" * 64})
    data = dataclasses.replace(synthetic(), identity={"name": "mnist", "sha256": loaded})
    with pytest.raises(DropcliError, match=f"has sha256 {loaded[:12]}, but the study records aaaaaaaaaaaa"):
        run_study(plan, resolve_device("cpu"), parallel_models=2, data=data)
    assert not (tmp_path / "s" / "runs.csv").exists()
    claim(tmp_path / "t", plan.identity, fresh=False)  # the same data: trains
    same = dataclasses.replace(synthetic(), identity={"name": "mnist", "sha256": "a" * 64})
    plan = make_plan(GRID, BASE, tmp_path / "t", data={"name": "mnist", "sha256": "a" * 64})
    assert run_study(plan, resolve_device("cpu"), parallel_models=4, data=same)["ran"] == 4


def test_a_study_of_an_earlier_dropcli_is_replaced_only_once_adopted(tmp_path, reported):
    """A manifest that lists names without content (an earlier dropcli's) makes report refuse before
    writing, naming 'dropcli adopt'; after the user adopts the folder, report replaces its files."""
    out = tmp_path / "s"
    shutil.copytree(reported, out)
    (out / MANIFEST).write_text(json.dumps({"files": sorted(read_manifest(out))}))  # as an earlier dropcli wrote it
    before = snapshot(out)
    check_error(runner.invoke(app, ["report", str(out)]), 2, f"check the folder's files, then record them with "
                                                             f"'dropcli adopt {out}'")
    assert snapshot(out) == before
    adopted = runner.invoke(app, ["adopt", str(out)])
    assert adopted.exit_code == 0 and "Recorded 8 files as dropcli's: ablation.png, curves.png" in adopted.stdout
    assert all(v for v in read_manifest(out).values())
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert "Nothing to record" in runner.invoke(app, ["adopt", str(out)]).stdout
    check_error(runner.invoke(app, ["adopt", str(tmp_path)]), 2, "holds no study.json; adopt only a study folder")


@pytest.mark.parametrize("edit", ["changed", "earlier manifest"])
def test_fresh_and_its_dry_run_refuse_alike_what_fresh_may_not_delete(tmp_path, edit):
    out = cli_study(tmp_path / "s")
    if edit == "changed":
        (out / "study.json").write_text((out / "study.json").read_text() + " ")  # edited by hand
    else:
        (out / MANIFEST).write_text(json.dumps({"files": ["study.json"]}))
    before = snapshot(out)
    dry = runner.invoke(app, [*TINY, "--out", str(out), "--fresh", "--dry-run"])
    run = runner.invoke(app, [*TINY, "--out", str(out), "--fresh"])
    for result in (dry, run):
        check_error(result, 1, f"nothing was deleted: {out / 'study.json'}")
    assert dry.stderr == run.stderr and snapshot(out) == before
