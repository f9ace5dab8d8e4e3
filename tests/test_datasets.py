"""The real datasets' sources: DreamBooth (objects) and UnlearnCanvas (styles).

DreamBooth runs on the real dataset beside the project when it is there; UnlearnCanvas
(tens of GB) on a miniature in its layout that the tests write.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from continual_lora.data.concepts import CONCEPT_FILE, read_concept
from continual_lora.data.sources import SOURCES, make_source
from dataset_fixtures import UC_IMAGES, UC_OBJECTS, UC_STYLES
from snakemake_harness import run_snakemake

REPO = Path(__file__).resolve().parents[1]
DREAMBOOTH = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dreambooth"
TOKENS = ["sks", "zwz", "sbu", "uwu", "pdw", "twt", "zsn", "ofl", "psq", "cws"]

# What the paper's selection gives on the upstream dataset (the reference code's
# preprocess/generate_object_dataset.py gives the same), written out so that a change
# of the selection shows here.
DREAMBOOTH_SUBJECTS = [
    "colorful_sneaker", "fancy_boot", "backpack", "bear_plushie", "candle",
    "can", "pink_sunglasses", "berry_bowl", "red_cartoon", "teapot",
]  # fmt: skip


def needs_dreambooth():
    if not (DREAMBOOTH / "dataset" / "prompts_and_classes.txt").is_file():
        pytest.skip(f"the DreamBooth dataset is not at {DREAMBOOTH}")


def protocol_selection(classes_file: Path) -> list[tuple[str, str]]:
    """The paper's DreamBooth selection, written out literally: (class, subject)."""
    lines = classes_file.read_text().splitlines()
    table = lines[lines.index("subject_name,class") + 1 :]
    classes = {}
    for line in table[: table.index("")]:
        subject, class_word = line.split(",")
        classes.setdefault(class_word, []).append(subject)
    random.seed(42)
    sampled = random.sample(sorted(classes), 10)
    return [(c, random.choice(sorted(classes[c]))) for c in sampled]


def test_the_real_dataset_sources_are_registered():
    assert {"synthetic", "dreambooth", "unlearncanvas"} <= set(SOURCES)


def test_dreambooth_selects_protocol_subjects_with_protocol_tokens_and_prompts():
    needs_dreambooth()
    source = make_source("objects", {"source": "dreambooth", "path": str(DREAMBOOTH)})
    concepts = source.concepts(10)
    expected = protocol_selection(DREAMBOOTH / "dataset" / "prompts_and_classes.txt")
    assert [(c.class_word, c.name) for c in concepts] == expected
    assert [c.name for c in concepts] == DREAMBOOTH_SUBJECTS
    assert [c.token for c in concepts] == TOKENS
    for concept, token in zip(concepts, TOKENS):
        assert concept.domain == "objects"
        assert concept.prompt == f"a photo of {token} {concept.class_word}"
        assert concept.subject == f"{token} {concept.class_word}"
    # fewer tasks: a prefix of the paper's list, not another draw
    assert source.concepts(3) == concepts[:3]
    # the folder of prompts_and_classes.txt itself is accepted as well as the repository's
    inner = make_source("objects", {"source": "dreambooth", "path": str(DREAMBOOTH / "dataset")})
    assert inner.concepts(10) == concepts


def test_dreambooth_prepares_every_photo_as_it_is_for_training_and_as_reference(tmp_path):
    needs_dreambooth()
    source = make_source("objects", {"source": "dreambooth", "path": str(DREAMBOOTH)})
    concept = source.concepts(10)[8]  # red_cartoon: 4 photos
    source.prepare(concept, tmp_path / concept.name)
    photos = sorted((DREAMBOOTH / "dataset" / concept.name).glob("*.jpg"))
    assert len(photos) == 4
    prepared = read_concept(tmp_path / concept.name)
    assert prepared.concept == concept
    assert sorted(p.name for p in (tmp_path / concept.name).iterdir()) == [CONCEPT_FILE, "train"]
    # the photos themselves, byte for byte and in file order, are both the training
    # images and the reference set: what the paper's code reads
    assert [p.relative_to(tmp_path / concept.name).as_posix() for p in prepared.train_images] == [
        f"train/red_cartoon_{p.name}" for p in photos
    ]
    assert prepared.reference_images == prepared.train_images
    for copy, photo in zip(prepared.train_images, photos):
        assert copy.read_bytes() == photo.read_bytes()
    assert [im.size for im in prepared.load_reference_images()] == [Image.open(p).size for p in photos]


def test_dreambooth_photos_are_read_upright_for_training_and_as_stored_for_the_metrics(tmp_path, dreambooth):
    source = make_source("objects", {"source": "dreambooth", "path": str(dreambooth)})
    concept = source.concepts(1)[0]
    source.prepare(concept, tmp_path / "out")
    prepared = read_concept(tmp_path / "out")
    rotated, wide, grey = prepared.load_train_images()
    pixels = np.asarray(rotated, np.int32)
    assert rotated.size == (32, 32)
    assert pixels[:12, :, 0].min() > 200 and pixels[:12, :, 2].max() < 60  # red on top
    assert pixels[-12:, :, 2].min() > 200 and pixels[-12:, :, 0].max() < 60  # blue below
    assert wide.size == (40, 20) and grey.size == (20, 30) and wide.mode == grey.mode == "RGB"
    assert tuple(np.asarray(wide)[10, 20]) == (0, 255, 0)
    assert tuple(np.asarray(grey)[15, 10]) == (128, 128, 128)
    # the metrics see the file's own pixels, sideways, as the paper's code reads them
    stored = np.asarray(prepared.load_reference_images()[0], np.int32)
    assert stored[:, :12, 0].min() > 200 and stored[:, -12:, 2].min() > 200  # red on the left


@pytest.mark.parametrize(
    ("settings", "domain", "n", "message"),
    [
        ({}, "objects", 10, "dataset.path is required for dataset.source 'dreambooth'"),
        ({"path": "{tmp}/nowhere"}, "objects", 10, "dataset.path '{tmp}/nowhere' is not a directory"),
        ({"path": "{tmp}"}, "objects", 10, "dataset.path '{tmp}' holds no prompts_and_classes.txt"),
        ({"path": "{db}"}, "styles", 10, "domain 'styles' does not match dataset.source 'dreambooth'"),
        ({"path": "{db}"}, "objects", 11, "n_tasks 11 exceeds dataset.selection_size 10"),
        (
            {"path": "{db}", "selection_size": 11},
            "objects",
            11,
            "lists 10 classes in prompts_and_classes.txt, fewer than the 11",
        ),
    ],
)
def test_dreambooth_config_problems_are_one_sentence_naming_the_key_and_path(
    tmp_path, dreambooth, settings, domain, n, message
):
    settings = {k: v.format(tmp=tmp_path, db=dreambooth) if isinstance(v, str) else v for k, v in settings.items()}
    with pytest.raises(ValueError) as error:
        make_source(domain, {"source": "dreambooth", **settings}).concepts(n)
    assert message.format(tmp=tmp_path, db=dreambooth) in str(error.value)


def decode_uc(image: Image.Image) -> tuple[str, str, int]:
    r, g, b = (int(round(v / step)) for v, step in zip(np.asarray(image, np.float32).mean((0, 1)), (20, 20, 40)))
    return (UC_STYLES[r] if r < len(UC_STYLES) else "Seed_Images", UC_OBJECTS[g], b)


def expected_uc_selection(root: Path) -> dict[str, dict]:
    """The documented draws, on the global generator: style -> its object, train images
    and reference images, each as (style, object, number)."""
    random.seed(42)
    objects = sorted(p.name for p in (root / "Seed_Images").iterdir())
    train_objects = random.sample(objects, 10)
    held_out = [o for o in objects if o not in train_objects]
    styles = random.sample(sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "Seed_Images"), 10)
    numbers = random.choices(range(1, UC_IMAGES + 1), k=len(held_out))
    selection = {}
    for style, obj in zip(styles, train_objects):
        files = sorted(p.name for p in (root / style / obj).iterdir() if p.suffix == ".jpg")
        train = random.sample(files, 5)
        selection[style] = {
            "object": obj,
            "train": sorted((style, obj, int(f.split(".")[0])) for f in train),
            "reference": [(style, held, number) for held, number in zip(held_out, numbers)],
        }
    return selection


def test_unlearncanvas_selects_ten_styles_each_training_on_one_object(unlearncanvas):
    source = make_source("styles", {"source": "unlearncanvas", "path": str(unlearncanvas)})
    concepts = source.concepts(10)
    expected = expected_uc_selection(unlearncanvas)
    assert [c.name for c in concepts] == [style.lower() for style in expected]
    assert len({c.class_word for c in concepts}) == 10
    for concept, (style, chosen) in zip(concepts, expected.items()):
        words = style.lower().replace("_", " ")
        obj = chosen["object"].lower()
        assert concept.domain == "styles" and concept.token is None
        assert concept.subject == words and concept.class_word == obj
        assert concept.prompt == f"{words} image of {obj}"
    assert source.concepts(4) == concepts[:4]


def test_unlearncanvas_prepares_five_train_images_and_one_reference_per_held_out_object(unlearncanvas, tmp_path):
    source = make_source("styles", {"source": "unlearncanvas", "path": str(unlearncanvas)})
    expected = expected_uc_selection(unlearncanvas)
    held_out = set(UC_OBJECTS) - {chosen["object"] for chosen in expected.values()}
    assert len(held_out) == 2
    # backwards, so that each concept is prepared without the earlier ones before it
    for concept, (style, chosen) in reversed(list(zip(source.concepts(10), expected.items()))):
        source.prepare(concept, tmp_path / concept.name)
        prepared = read_concept(tmp_path / concept.name)
        train = [decode_uc(image) for image in prepared.load_train_images()]
        reference = [decode_uc(image) for image in prepared.load_reference_images()]
        assert sorted(train) == chosen["train"]
        assert len(set(train)) == 5 and {(s, o) for s, o, _ in train} == {(style, chosen["object"])}
        assert reference == chosen["reference"]
        assert {o for _, o, _ in reference} == held_out and {s for s, _, _ in reference} == {style}
        # copies of the files themselves, named as the paper's code names its metric set
        for copy, (_, obj, number) in zip(prepared.reference_images, reference):
            assert copy.name == f"{obj}_{number}.jpg"
            assert copy.read_bytes() == (unlearncanvas / style / obj / f"{number}.jpg").read_bytes()


def test_unlearncanvas_config_problems_name_the_key_and_path(unlearncanvas, tmp_path):
    with pytest.raises(ValueError, match="has no Seed_Images folder"):
        make_source("styles", {"source": "unlearncanvas", "path": str(tmp_path)}).concepts(10)
    with pytest.raises(ValueError, match="does not match dataset.source 'unlearncanvas'"):
        make_source("objects", {"source": "unlearncanvas", "path": str(unlearncanvas)}).concepts(10)
    with pytest.raises(ValueError, match="12 objects in Seed_Images, but the selection needs 12 to train on"):
        settings = {"source": "unlearncanvas", "path": str(unlearncanvas), "selection_size": 12}
        make_source("styles", settings).concepts(10)


def test_the_schema_requires_a_path_for_the_real_datasets():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "workflow/schemas/config.schema.yaml")
    for source in ("dreambooth", "unlearncanvas"):
        with pytest.raises(WorkflowError, match="'path' is a required property"):
            validate({"experiments": {"e": {"domain": "objects", "dataset": {"source": source}}}}, schema)
    dataset = {"source": "dreambooth", "path": "/d"}
    config = {"experiments": {"e": {"domain": "objects", "dataset": dataset}}}
    validate(config, schema)
    # no synthetic-only key is filled in, so a real source can refuse any it is given
    assert config["experiments"]["e"]["dataset"] == {"source": "dreambooth", "path": "/d"}


def test_a_real_source_refuses_the_synthetic_worlds_keys(dreambooth):
    source = make_source("objects", {"source": "dreambooth", "path": str(dreambooth), "resolution": 1024})
    with pytest.raises(ValueError, match=r"dataset.resolution is not read by dataset source 'dreambooth' "
                                         r"\(it reads path, selection_size\); remove it"):  # fmt: skip
        source.check(1)


def test_the_synthetic_worlds_pattern_scale_coarsens_the_concepts_it_prepares(tmp_path):
    plain = make_source("objects", {"source": "synthetic"})
    coarse = make_source("objects", {"source": "synthetic", "pattern_scale": 2.0})
    concepts = coarse.check(2)
    assert concepts == plain.check(2)  # the same concepts, names, prompts and tokens
    for name, source in (("plain", plain), ("coarse", coarse)):
        source.prepare(concepts[0], tmp_path / name)
    differ = [
        np.asarray(Image.open(a)).tobytes() != np.asarray(Image.open(b)).tobytes()
        for a, b in zip(sorted((tmp_path / "plain").rglob("*.png")), sorted((tmp_path / "coarse").rglob("*.png")))
    ]
    assert differ and all(differ)


def test_the_prepare_concept_rule_prepares_a_dreambooth_subject(tmp_path):
    needs_dreambooth()
    config = {
        "experiments": {
            "db_objects": {
                "domain": "objects",
                "dataset": {"source": "dreambooth", "path": str(DREAMBOOTH)},
                "n_tasks": 2,
                "order_seeds": [0],
                "training_seeds": [0],
            }
        }
    }
    configfile = tmp_path / "dreambooth.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    target = "results/db_objects/data/fancy_boot"
    run_snakemake(workdir, configfile, target, cores=1, gpu=None)
    prepared = read_concept(workdir / target)
    assert prepared.concept.prompt == "a photo of zwz boot" and prepared.concept.token == "zwz"
    assert len(prepared.train_images) == len(list((DREAMBOOTH / "dataset" / "fancy_boot").glob("*.jpg"))) == 6
    assert prepared.reference_images == prepared.train_images
    assert json.loads((workdir / target / CONCEPT_FILE).read_text())["concept"]["name"] == "fancy_boot"
    # only the selected subject's photos are copied, not the dataset
    assert not any(p.name == "dataset" for p in workdir.rglob("*"))
