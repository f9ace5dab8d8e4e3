"""A user's own concepts (dataset.source folder): a folder of images per concept,
listed in concepts.yaml. It prepares into the shared layout like the real datasets,
every mistake in it stops the workflow before any job in one sentence that names the
key, the file and the concept, and the workflow runs on it end to end.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from dataset_fixtures import synthetic_concept_images, write_folder_dataset
from PIL import Image
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from snakemake_harness import run_snakemake

from continual_lora.config import ConfigError, check_config
from continual_lora.data.concepts import CONCEPT_FILE, read_concept
from continual_lora.data.folder import CONCEPTS_FILE
from continual_lora.data.sources import SOURCES, DatasetMissing, make_source

REPO = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).parent / "configs"
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
NANO = yaml.safe_load((CONFIGS / "nano.yaml").read_text())

OBJECTS = [
    {"name": "my_dog", "token": "sks", "class": "dog"},
    {"name": "red_mug", "token": "zwz", "class": "mug", "prompt": "a photo of zwz mug on a table",
     "folder": "Red Mug", "reference": "references/red mug"},
]  # fmt: skip
STYLES = [
    {"name": "watercolor", "style": "watercolor", "class": "house"},
    {"name": "ink", "style": "ink drawing", "class": "cat", "prompt": "an ink drawing of a cat"},
]


def folder_config(root: Path, domain: str = "objects", n_tasks: int = 2, **dataset) -> dict:
    """The nano config with one experiment, ``mine``, on the folder of concepts at ``root``."""
    config = copy.deepcopy(NANO)
    config["experiments"] = {
        "mine": config["experiments"]["nano"]
        | {"domain": domain, "n_tasks": n_tasks, "dataset": {"source": "folder", "path": str(root), **dataset}}
    }
    return config


def problem(config: dict, directory: Path) -> str:
    """The message that stops the workflow for ``config`` (the Snakefile's checks at load)."""
    with pytest.raises((ConfigError, WorkflowError)) as error:
        validate(config, str(SCHEMA))
        check_config(config, schema=SCHEMA, directory=directory)
    return str(error.value)


def matches(message: str, pattern: str) -> bool:
    """``message`` is ``pattern`` exactly, where each ``*`` of the pattern stands for any text."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), message, flags=re.S) is not None


def test_the_folder_source_is_registered():
    assert "folder" in SOURCES


def test_objects_are_prepared_into_the_concept_layout_as_the_files_are(tmp_path):
    root = tmp_path / "mine"
    write_folder_dataset(root, OBJECTS)
    Image.new("RGB", (20, 12), (200, 10, 10)).save(root / "my_dog" / "photo.jpg", quality=90)  # not only PNGs
    (root / "my_dog" / ".DS_Store").write_text("")  # hidden litter is skipped
    source = make_source("objects", {"source": "folder", "path": str(root)})
    dog, mug = source.check(2)
    assert dog.prompt == "a photo of sks dog" and dog.subject == "sks dog" and dog.token == "sks"
    assert (mug.name, mug.prompt, mug.subject) == ("red_mug", "a photo of zwz mug on a table", "zwz mug")
    assert source.concepts(1) == [dog]  # fewer tasks: the first concepts of the file

    for concept, folder, reference in ((dog, "my_dog", None), (mug, "Red Mug", "references/red mug")):
        out = tmp_path / "prepared" / concept.name
        source.prepare(concept, out)
        payload = json.loads((out / CONCEPT_FILE).read_text())
        assert payload["concept"] == {
            "name": concept.name, "domain": "objects", "prompt": concept.prompt, "subject": concept.subject,
            "class_word": concept.class_word, "token": concept.token,
        }  # fmt: skip
        prepared = read_concept(out)
        originals = sorted(p for p in (root / folder).iterdir() if not p.name.startswith("."))
        assert [p.name for p in prepared.train_images] == [f"{Path(folder).name}_{p.name}" for p in originals]
        for copy_, original in zip(prepared.train_images, originals):
            assert copy_.read_bytes() == original.read_bytes()
        if reference is None:  # the training images themselves, copied once
            assert prepared.reference_images == prepared.train_images
            assert sorted(p.name for p in out.iterdir()) == [CONCEPT_FILE, "train"]
        else:
            references = sorted((root / reference).glob("*.png"))
            assert [p.read_bytes() for p in prepared.reference_images] == [p.read_bytes() for p in references]
            assert all(p.parent.name == "reference" for p in prepared.reference_images)


def test_styles_are_prompted_and_evaluated_by_their_style_word(tmp_path):
    root = write_folder_dataset(tmp_path / "mine", STYLES)
    source = make_source("styles", {"source": "folder", "path": str(root)})
    watercolor, ink = source.check(2)
    assert (watercolor.prompt, watercolor.subject, watercolor.class_word, watercolor.token) == (
        "watercolor image of house", "watercolor", "house", None
    )  # fmt: skip
    assert (ink.prompt, ink.subject, ink.class_word) == ("an ink drawing of a cat", "ink drawing", "cat")
    source.prepare(ink, tmp_path / "ink")
    prepared = read_concept(tmp_path / "ink")
    assert prepared.concept == ink and len(prepared.train_images) == 3
    assert prepared.reference_images == prepared.train_images


def test_only_the_first_n_tasks_images_are_opened(tmp_path):
    entries = [*OBJECTS, {"name": "cat", "token": "sbu", "class": "cat"}]
    root = write_folder_dataset(tmp_path / "mine", entries)
    (root / "cat" / "00.png").write_bytes(b"not a png")
    accepted = folder_config(root, n_tasks=2)
    validate(accepted, str(SCHEMA))
    check_config(accepted, schema=SCHEMA, directory=tmp_path)
    assert "cat/00.png' cannot be read as an image" in problem(folder_config(root, n_tasks=3), tmp_path)


@pytest.mark.parametrize("case", ["absent", "empty"])
def test_a_folder_not_there_yet_is_missing_data_not_a_mistake(tmp_path, case):
    root = tmp_path / "mine"
    if case == "empty":
        root.mkdir()
    with pytest.raises(DatasetMissing):  # a dry run can go on without it
        make_source("objects", {"source": "folder", "path": str(root)}).concepts(2)


def yaml_text(text: str):
    return lambda root: (root / CONCEPTS_FILE).write_text(text)


def edit(index: int, **changes):
    """Change (or, given None, remove) fields of concept ``index`` in concepts.yaml."""

    def apply(root: Path):
        entries = yaml.safe_load((root / CONCEPTS_FILE).read_text())
        for key, value in changes.items():
            if value is None:
                entries[index].pop(key, None)
            else:
                entries[index][key] = value
        (root / CONCEPTS_FILE).write_text(yaml.safe_dump(entries, sort_keys=False))

    return apply


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


OBJECT_FIELDS = "an object concept has name, token, class and optionally prompt, folder, reference"
STYLE_FIELDS = "a style concept has name, style, class and optionally prompt, folder, reference"

# (id, domain, damage to the valid dataset, config key, the sentence after the key)
# {file} is concepts.yaml, {root} the dataset folder.
BAD_DATASETS = [
    ("no concepts.yaml", "objects", lambda root: (root / CONCEPTS_FILE).unlink(), "dataset.path",
     "'{root}' has no concepts.yaml; expected one there listing each concept (its name, token and class) "
     "beside the concepts' image folders"),
    ("not YAML", "objects", yaml_text("- name: my_dog\n token: sks\n"), "dataset.path",
     "file '{file}' is not valid YAML (* at line 2, column 2); fix its syntax"),
    ("a key twice", "objects", yaml_text("- {name: my_dog, token: sks, class: dog, class: cat}\n"), "dataset.path",
     "file '{file}' is not valid YAML (the key 'class' is given twice in one mapping at line 1, column 42); fix its syntax"),
    ("a mapping", "objects", yaml_text("my_dog: {token: sks, class: dog}\n"), "dataset.path",
     "file '{file}' holds a mapping, not a list of concepts; write each concept as an item '- name: ...'"),
    ("no concepts", "objects", yaml_text("# to do\n"), "dataset.path",
     "file '{file}' lists no concepts; write each concept as an item '- name: ...'"),
    ("an item that is no mapping", "objects", yaml_text("- my_dog\n"), "dataset.path",
     f"file '{{file}}' has as concept 1 a string 'my_dog', not a mapping of its fields ({OBJECT_FIELDS})"),
    ("a typo", "objects", edit(1, tokn="zwz", token=None), "dataset.path",
     f"file '{{file}}' gives concept 2 ('red_mug') the unknown key 'tokn' (did you mean 'token'?); {OBJECT_FIELDS}"),
    ("a style for objects", "objects", edit(0, style="ink"), "dataset.path",
     "file '{file}' gives concept 1 ('my_dog') a style, which only style concepts have, but the experiment's "
     f"domain is objects ({OBJECT_FIELDS})"),
    ("a token for styles", "styles", edit(1, token="sks"), "dataset.path",
     "file '{file}' gives concept 2 ('ink') a token, which only object concepts have, but the experiment's "
     f"domain is styles ({STYLE_FIELDS})"),
    ("no class", "objects", edit(0, **{"class": None}), "dataset.path",
     f"file '{{file}}' gives concept 1 ('my_dog') no class; {OBJECT_FIELDS}"),
    ("no style", "styles", edit(0, style=None), "dataset.path",
     f"file '{{file}}' gives concept 1 ('watercolor') no style; {STYLE_FIELDS}"),
    ("no name", "objects", edit(0, name=None), "dataset.path",
     f"file '{{file}}' gives concept 1 no name; {OBJECT_FIELDS}"),
    ("a token YAML reads as false", "objects", yaml_text("- {name: my_dog, token: no, class: dog}\n"),
     "dataset.path", "file '{file}' gives concept 1 ('my_dog') the token False (a true/false value), not text; put it in quotes"),
    ("an empty prompt", "objects", yaml_text("- {name: my_dog, token: sks, class: dog, prompt: }\n"), "dataset.path",
     "file '{file}' gives concept 1 ('my_dog') an empty prompt; write it out or leave the key out"),
    ("a name that is no folder name", "objects", edit(0, name="My Dog"), "dataset.path",
     "file '{file}' gives concept 1 ('My Dog') a name that is not usable as a folder name and wildcard (expected "
     "lower-case letters, digits and '_', such as 'my_dog'); its image folder may keep its own name, given as folder:"),
    ("a token of two words", "objects", edit(0, token="sks dog"), "dataset.path",
     "file '{file}' gives concept 1 ('my_dog') the token 'sks dog', which is not one word; choose a rare word such as 'sks'"),
    ("a prompt without the token", "objects", edit(1, prompt="a photo of a mug"), "dataset.path",
     "file '{file}' gives concept 2 ('red_mug') the prompt 'a photo of a mug', which does not contain its token "
     "'zwz', the word the concept is learnt under"),
    ("a prompt without the style", "styles", edit(1, prompt="a drawing of a cat"), "dataset.path",
     "file '{file}' gives concept 2 ('ink') the prompt 'a drawing of a cat', which does not contain its style "
     "word 'ink drawing', the word the concept is learnt under"),
    ("a folder outside the dataset", "objects", edit(1, reference="../elsewhere"), "dataset.path",
     "file '{file}' gives concept 2 ('red_mug') the reference '../elsewhere', which is not a folder inside "
     "'{root}'; give it relative to dataset.path"),
    ("two names alike", "objects", edit(1, name="my_dog"), "dataset.path",
     "file '{file}' gives concepts 1 and 2 the same name 'my_dog'; each concept needs its own name"),
    ("two tokens alike", "objects", edit(1, token="sks", prompt=None), "dataset.path",
     "file '{file}' gives concepts 1 and 2 the same token 'sks'; each concept needs its own token"),
    ("two styles alike", "styles", edit(1, style="watercolor", prompt=None), "dataset.path",
     "file '{file}' gives concepts 1 and 2 the same style 'watercolor'; each concept needs its own style"),
    ("two concepts on one folder", "objects", edit(1, folder="my_dog"), "dataset.path",
     "file '{file}' gives concepts 1 and 2 the same image folder 'my_dog'; each concept needs its own image folder"),
    ("no image folder", "objects", edit(1, folder="Red Mugs"), "dataset.path",
     "file '{file}' lists concept 2 ('red_mug'), whose image folder '{root}/Red Mugs' is not a directory; put "
     "its images there or name their folder with folder:"),
    ("an empty image folder", "objects", lambda root: [p.unlink() for p in (root / "my_dog").iterdir()],
     "dataset.path", "folder '{root}/my_dog' holds no images"),
    ("a file that is no image", "objects", lambda root: (root / "my_dog" / "notes.txt").write_text("good boy"),
     "dataset.path", "folder '{root}/my_dog' holds 'notes.txt', which is not an image (expected only .jpg, .jpeg, "
     ".png, .webp, .bmp, .tif, .tiff files); move it out of the dataset"),
    ("a truncated image", "objects", lambda root: truncate(root / "my_dog" / "01.png"), "dataset.path",
     "file '{root}/my_dog/01.png' cannot be read as an image (*); replace or remove it"),
    ("no reference folder", "objects", lambda root: (root / "references/red mug").rename(root / "refs"),
     "dataset.path", "file '{file}' lists concept 2 ('red_mug'), whose reference folder '{root}/references/red mug' "
     "is not a directory"),
    ("an empty reference folder", "objects", lambda root: [p.unlink() for p in (root / "references/red mug").iterdir()],
     "dataset.path", "folder '{root}/references/red mug' holds no images"),
    ("more tasks than concepts", "objects", lambda root: None, "n_tasks",
     "3 exceeds the 2 concepts that file '{file}' lists"),
    ("a setting of another source", "objects", lambda root: None, "dataset.resolution",
     "is not read by dataset source 'folder' (it reads path); remove it"),
]  # fmt: skip


def bad_dataset(tmp_path: Path, case: str) -> tuple[dict, str]:
    """The config of a folder of concepts damaged as ``case`` says, and the whole
    sentence that should stop the workflow."""
    _, domain, damage, key, detail = next(c for c in BAD_DATASETS if c[0] == case)
    root = write_folder_dataset(tmp_path / "mine", copy.deepcopy(OBJECTS if domain == "objects" else STYLES))
    damage(root)
    config = folder_config(root, domain, n_tasks=3 if case == "more tasks than concepts" else 2)
    if case == "a setting of another source":
        config["experiments"]["mine"]["dataset"]["resolution"] = 32
    detail = detail.replace("{file}", str(root / CONCEPTS_FILE)).replace("{root}", str(root))
    return config, f"config key 'experiments.mine.{key}': {detail}."


@pytest.mark.parametrize("case", [c[0] for c in BAD_DATASETS])
def test_each_mistake_in_a_folder_of_concepts_is_one_sentence_naming_key_file_and_concept(tmp_path, case):
    config, expected = bad_dataset(tmp_path, case)
    message = problem(config, tmp_path)
    assert matches(message, expected), f"\n{message}\n{expected}"
    assert message.count("\n") == 0


@pytest.mark.parametrize("case", ["a typo", "more tasks than concepts"])
def test_a_mistake_in_a_folder_of_concepts_stops_the_snakefile_before_any_job(tmp_path, case):
    config, expected = bad_dataset(tmp_path, case)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()
    output = run_snakemake(workdir, configfile, "--dry-run", cores=1, gpu=None, ok=False)
    assert expected in output, output[-3000:]
    assert not (workdir / "results").exists()


def test_the_schema_requires_a_path_for_a_folder_of_concepts():
    with pytest.raises(WorkflowError, match="'path' is a required property"):
        validate({"experiments": {"e": {"domain": "objects", "dataset": {"source": "folder"}}}}, str(SCHEMA))


def test_the_example_config_passes_every_check_on_a_folder_of_concepts(tmp_path, monkeypatch):
    config = yaml.safe_load((REPO / "config" / "own_concepts.yaml").read_text())
    (experiment,) = config["experiments"].values()
    assert experiment["dataset"] == {"source": "folder", "path": "data/my_concepts"}
    monkeypatch.chdir(tmp_path)  # the path is relative to the directory snakemake runs in
    write_folder_dataset(tmp_path / "data/my_concepts", OBJECTS + [
        {"name": f"thing{i}", "token": token, "class": "toy"} for i, token in enumerate(["sbu", "uwu", "pdw"])
    ])  # fmt: skip
    validate(config, str(SCHEMA))
    check_config(config, schema=SCHEMA, directory=tmp_path)


# --------------------------------------------------------------------------- end to end


def test_the_workflow_runs_end_to_end_on_a_folder_of_concepts(tmp_path):
    # Two objects of the synthetic world, which the tiny model can draw, under the
    # user's own names, tokens and prompts.
    entries, images = [], {}
    for (concept, train, reference), name, token in zip(
        synthetic_concept_images("objects", 2, resolution=32), ("first_toy", "second_toy"), ("qxv", "jvk")
    ):
        entries.append({"name": name, "token": token, "class": concept.class_word,
                        "prompt": f"a close-up photo of {token} {concept.class_word}", "reference": f"ref/{name}"})  # fmt: skip
        images[name], images[f"ref/{name}"] = train, reference
    root = write_folder_dataset(tmp_path / "my_concepts", entries, images)
    config = folder_config(root)
    config["training"] |= {"steps": 2, "batch_size": 2}
    configfile = tmp_path / "own.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"

    # Two jobs at a time: sampling the base model and training task 1 need not wait for each other.
    run_snakemake(workdir, configfile, "results/mine/tables/summary.csv", gpu=2)

    results = workdir / "results/mine"
    assert (results / "tables/summary.csv").stat().st_size > 0
    prompts = {e["name"]: e["prompt"] for e in entries}
    trained = {}
    for task in (1, 2):
        meta = json.loads((results / f"naive/order0_seed0/task{task}/checkpoint/meta.json").read_text())
        trained[meta["concept"]] = meta["prompt"]
    assert trained == prompts
    for entry in entries:
        prepared = read_concept(results / "data" / entry["name"])
        assert prepared.concept.subject == f"{entry['token']} {entry['class']}"
        assert len(prepared.reference_images) == 2 and prepared.reference_images != prepared.train_images
