"""The manifest of an owned folder (owned.py): dropcli replaces or deletes only a file whose content is
still the content it recorded when it wrote it, whatever a manifest received or edited by hand says."""

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dropcli.files
from dropcli.config import TrainConfig
from dropcli.errors import DropcliError, UsageError
from dropcli.grid import GridSpec, study_identity
from dropcli.owned import MANIFEST, MOVE, OwnedFolder, content_of, read_manifest
from dropcli.schemas import MANIFEST_NAMES, MAX_JSON_BYTES
from dropcli.study import claim, study_folder

IDENTITY = study_identity(GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2)),
                          TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50))
USER_NAMES = ["notes.txt", "report.html", "runs.csv", "summary.csv", "ablation.png", "thesis/chapter1.tex"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def files_under(folder):
    """{relative path: bytes} of every regular file under folder (links are not followed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def hostile_manifest(names, form, data):
    """A manifest listing `names` as an earlier dropcli's list ("old"), with a made-up content
    ("wrong"), with the right hash and another size ("size"), with no content ("null"), or with the
    file's very content ("right": an empty .gitkeep's hash is common knowledge)."""
    if form == "old":
        return {"files": sorted(names)}
    entries = {}
    for name, content in names.items():
        digest = hashlib.sha256(content).hexdigest()
        entries[name] = {"wrong": [{"sha256": data.draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
                                    "size": len(content)}],
                         "size": [{"sha256": digest, "size": len(content) + 1}], "null": None,
                         "right": [{"sha256": digest, "size": len(content)}]}[form]
    return {"format": "dropcli-manifest/2", "files": entries}


@SETTINGS
@given(data=st.data(), chosen=st.lists(st.sampled_from(USER_NAMES), min_size=1, max_size=4, unique=True),
       form=st.sampled_from(["old", "wrong", "size", "null", "right"]))
def test_a_received_manifest_cannot_make_dropcli_delete_or_replace_a_users_file(tmp_path_factory, data, chosen, form):
    """Generated user files (any bytes) listed by a received or hand-edited manifest in every form it
    could take: --fresh (remove_all), a write over one of them and remove() each refuse in one line,
    and every user file keeps its bytes. A name dropcli never writes (notes.txt) refuses the manifest
    whole, even where it records the file's very content; a name dropcli writes (runs.csv) with its
    very content is dropcli's by every sign there is, so "right" lists at least one other name."""
    out = tmp_path_factory.mktemp("study")
    if form == "right" and all(MANIFEST_NAMES.fullmatch(n) for n in chosen):
        chosen = [*chosen, "notes.txt"] if "notes.txt" not in chosen else chosen
    claim(out, IDENTITY, fresh=False)
    contents = {n: data.draw(st.binary(max_size=200)) for n in chosen}
    for name, content in contents.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(content)
    manifest = hostile_manifest(contents, form, data)
    manifest_files = manifest["files"]
    if form != "old":
        manifest_files["study.json"] = [content_of(out / "study.json").model_dump()]
    else:
        manifest_files.append("study.json")
    (out / MANIFEST).write_text(json.dumps(manifest))
    before = files_under(out)
    with pytest.raises(DropcliError) as e:
        claim(out, {**IDENTITY, "settings": {**IDENTITY["settings"], "epochs": 2}}, fresh=True)
    foreign = not all(MANIFEST_NAMES.fullmatch(n) for n in chosen)
    assert "\n" not in str(e.value)
    assert ("a name dropcli never writes" if foreign else "nothing was deleted") in str(e.value), str(e.value)
    folder = study_folder(out)
    for name in chosen:
        with pytest.raises(DropcliError, match="a name dropcli never writes" if foreign else MOVE):
            folder.write_text(name, "dropcli's")
        with pytest.raises(DropcliError, match="a name dropcli never writes" if foreign else MOVE):
            folder.remove(name)
    assert files_under(out) == before


def test_what_dropcli_wrote_and_nobody_changed_is_deleted_and_a_changed_file_stops_it(tmp_path):
    folder = OwnedFolder(tmp_path)
    folder.write_text("runs.csv", "mine")
    folder.write_text("runs.csv", "mine again")  # its own, unchanged: replaced
    sub = folder.subfolder("shards")
    sub.write_text("history.csv", "mine too")
    (tmp_path / "notes.txt").write_text("the user's")
    (tmp_path / "shards" / "history.csv").write_text("edited by the user")
    with pytest.raises(DropcliError, match=r"nothing was deleted: .*shards/history.csv has changed since dropcli wrote it"):
        folder.remove_all()
    assert (tmp_path / "runs.csv").read_text() == "mine again"  # nothing at all was deleted
    (tmp_path / "shards" / "history.csv").write_text("mine too")  # back to what dropcli wrote
    folder.remove_all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "notes.txt"]
    assert read_manifest(tmp_path) == {}


def test_an_earlier_manifest_deletes_nothing_and_says_how_to_clean_up(tmp_path):
    (tmp_path / "runs.csv").write_text("rows")
    (tmp_path / MANIFEST).write_text(json.dumps({"files": ["runs.csv", "shards/"]}))
    with pytest.raises(DropcliError) as e:
        OwnedFolder(tmp_path).remove_all()
    assert str(e.value).startswith("nothing was deleted: ") and "written by an earlier dropcli that did not record its content" in \
        str(e.value) and "delete by hand the files you no longer need" in str(e.value)
    assert (tmp_path / "runs.csv").read_text() == "rows"
    with pytest.raises(UsageError, match="cannot tell it is still that file and never replaces"):
        OwnedFolder(tmp_path).write_text("runs.csv", "new rows")
    OwnedFolder(tmp_path).write_text("summary.csv", "new")  # a new name is written and recorded with its content
    assert read_manifest(tmp_path)["summary.csv"] == (content_of(tmp_path / "summary.csv"),)
    assert read_manifest(tmp_path)["runs.csv"] is None  # still unvouched for


@pytest.mark.parametrize("cut", ["before the rename", "after the rename"])
def test_a_write_cut_off_at_any_moment_leaves_a_file_its_manifest_vouches_for(tmp_path, monkeypatch, cut):
    folder = OwnedFolder(tmp_path)
    folder.write_text("runs.csv", "old rows")
    real_replace, real_save = os.replace, OwnedFolder._save
    saves = []

    def replace(a, b):
        if cut == "before the rename":
            raise KeyboardInterrupt
        real_replace(a, b)

    def save(self, entries):
        saves.append(entries)
        if cut == "after the rename" and len(saves) == 2:
            raise KeyboardInterrupt  # the file is renamed; the manifest still lists the old and new contents
        real_save(self, entries)

    monkeypatch.setattr(dropcli.files.os, "replace", replace)
    monkeypatch.setattr(OwnedFolder, "_save", save)
    with pytest.raises(KeyboardInterrupt):
        folder.write_text("runs.csv", "new rows")
    monkeypatch.undo()
    assert (tmp_path / "runs.csv").read_text() == ("old rows" if cut == "before the rename" else "new rows")
    assert folder.problem("runs.csv") is None  # either content is vouched for: the next write goes ahead
    folder.write_text("runs.csv", "newer rows")
    assert read_manifest(tmp_path)["runs.csv"] == (content_of(tmp_path / "runs.csv"),)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=70), inner, max_size=4),
                           max_leaves=12)
entry_values = st.one_of(json_values, st.lists(st.fixed_dictionaries({"sha256": st.text("0123456789abcdef", min_size=63,
                                                                                       max_size=65),
                                                                     "size": st.integers(-2, 10)}), max_size=3))


@SETTINGS
@given(doc=st.one_of(json_values, st.fixed_dictionaries(
    {"format": st.sampled_from(["dropcli-manifest/2", "dropcli-manifest/3", 2]),
     "files": st.one_of(json_values, st.dictionaries(st.sampled_from(["a.txt", "../up.txt", "/abs", ".", "d/", "", "x/y"]),
                                                      entry_values, max_size=3))}),
    st.fixed_dictionaries({"files": st.lists(st.sampled_from(["a.txt", "../up.txt", "/abs", ".", "d/", ""]), max_size=3)})))
def test_any_manifest_is_read_as_dropcli_wrote_it_or_refused_in_one_line(tmp_path_factory, doc):
    folder = tmp_path_factory.mktemp("m")
    (folder / MANIFEST).write_text(json.dumps(doc))
    try:
        entries = read_manifest(folder)
    except DropcliError as e:
        assert "\n" not in str(e) and "is not a dropcli manifest" in str(e) or "not JSON" in str(e)
        return
    for name, versions in entries.items():  # what is accepted names a place inside the folder
        assert name and not name.startswith(("/", "..")) and name != "."
        assert versions == () if name.endswith("/") else versions is None or 1 <= len(versions) <= 2


def test_a_manifest_too_big_or_a_link_is_refused(tmp_path):
    (tmp_path / MANIFEST).write_text(" " * (MAX_JSON_BYTES + 1))
    with pytest.raises(DropcliError, match="too many for a dropcli manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).unlink()
    (tmp_path / "elsewhere.json").write_text(json.dumps({"format": "dropcli-manifest/2", "files": {}}))
    (tmp_path / MANIFEST).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(DropcliError, match="is a symbolic link"):
        OwnedFolder(tmp_path).write_text("a.txt", "x")
    assert not (tmp_path / "a.txt").exists()


def test_two_commands_writing_one_folder_at_once_lose_no_entry(tmp_path):
    """A report writing while a run commits: every manifest update is read and written under a lock
    on the folder, so each file ends up recorded with the content it has."""
    import threading

    folder = OwnedFolder(tmp_path)
    barrier = threading.Barrier(2)

    def writer(name):
        barrier.wait(timeout=10)
        for i in range(15):
            OwnedFolder(tmp_path).write_text(name, f"{name} {i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("runs.csv", "summary.csv")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = read_manifest(tmp_path)
    assert entries == {n: (content_of(tmp_path / n),) for n in ("runs.csv", "summary.csv")}
    folder.remove_all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST]


@pytest.mark.parametrize("study", sorted(p.parent for p in (Path(__file__).parent.parent / "results").glob(f"*/{MANIFEST}")),
                         ids=lambda p: p.name)
def test_every_committed_study_records_the_content_of_its_files(study):
    """report, merge and --fresh may replace the committed files only because their manifests vouch for them."""
    entries = read_manifest(study)
    assert entries and all(entries.values()) and OwnedFolder(study).blockers() == []
