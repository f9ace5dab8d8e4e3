"""Miniature copies of the real datasets in their upstream layouts, written by tests
(through the fixtures in conftest.py) and by benchmarks/cpu_suite.py: DreamBooth (a
repository folder with dataset/ and prompts_and_classes.txt) and UnlearnCanvas
(<Style>/<Object>/<n>.jpg plus Seed_Images)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def upright_pattern(size: int) -> Image.Image:
    """Red above blue: which way up it came out is plain to see."""
    image = Image.new("RGB", (size, size), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size, size // 2))
    return image


def write_dreambooth_fixture(root: Path, n_classes: int = 10) -> Path:
    """A miniature DreamBooth in its repository layout (``dataset/`` below ``root``),
    each subject with a sideways photo whose EXIF tag says to turn it, a wide RGBA PNG
    and a greyscale JPEG."""
    folder = root / "dataset"
    rows = []
    for i in range(n_classes):
        for subject in [f"thing{i}"] + (["thing0_b"] if i == 0 else []):
            rows.append(f"{subject},class {i}")
            (folder / subject).mkdir(parents=True)
            exif = Image.Exif()
            exif[0x0112] = 6  # stored turned 90 degrees anticlockwise: display turned clockwise
            sideways = upright_pattern(32).transpose(Image.Transpose.ROTATE_90)
            sideways.save(folder / subject / "00.jpg", exif=exif, quality=95)
            Image.new("RGBA", (40, 20), (0, 255, 0, 255)).save(folder / subject / "01.png")
            Image.new("L", (20, 30), 128).save(folder / subject / "02.jpg")
    (folder / "prompts_and_classes.txt").write_text(
        "Classes\n\nsubject_name,class\n" + "\n".join(rows) + "\n\nPrompts\n\nprompt_list = []\n"
    )
    return root


# A miniature UnlearnCanvas: 12 styles x 12 objects x 6 images of 8 px, each image a
# flat colour that says which (style, object, number) it is.
UC_STYLES = ["Abstractionism", "Byzantine", "Cartoon", "Dadaism", "Fauvism", "Van_Gogh",
             "Ukiyoe", "Pop_Art", "Sketch", "Vibrant_Flow", "Winter", "Rust"]  # fmt: skip
UC_OBJECTS = ["Architectures", "Bears", "Birds", "Butterfly", "Cats", "Dogs",
              "Fishes", "Flame", "Flowers", "Frogs", "Horses", "Sea"]  # fmt: skip
UC_IMAGES = 6


def uc_colour(style: int, obj: int, number: int) -> tuple[int, int, int]:
    return (20 * style, 20 * obj, 40 * number)


def write_unlearncanvas_fixture(root: Path) -> Path:
    for s, style in enumerate([*UC_STYLES, "Seed_Images"]):
        for o, obj in enumerate(UC_OBJECTS):
            (root / style / obj).mkdir(parents=True)
            for number in range(1, UC_IMAGES + 1):
                image = Image.new("RGB", (8, 8), uc_colour(s, o, number))
                image.save(root / style / obj / f"{number}.jpg", quality=100)
    (root / "metadata.jsonl").write_text("{}\n")  # upstream keeps files beside the styles
    for obj in UC_OBJECTS:
        (root / "Cartoon" / obj / ".DS_Store").write_text("")  # macOS litter, as upstream has
    return root


def write_datasets(root: Path) -> dict[str, Path]:
    """Both miniatures below ``root``, by the dataset.source that reads each."""
    datasets = {"dreambooth": root / "dreambooth", "unlearncanvas": root / "unlearncanvas"}
    write_dreambooth_fixture(datasets["dreambooth"])
    write_unlearncanvas_fixture(datasets["unlearncanvas"])
    return datasets


def with_dataset_paths(config: dict, datasets: dict[str, Path]) -> dict:
    """``config`` (changed in place) with each experiment's dataset.path pointing at the
    miniature of its dataset.source, as a paper preset's experiments need."""
    for experiment in config["experiments"].values():
        experiment["dataset"]["path"] = str(datasets[experiment["dataset"]["source"]])
    return config


def write_folder_dataset(
    root: Path, entries: list[dict], images: dict[str, list[Image.Image]] | None = None
) -> Path:
    """A user's folder of concepts (dataset.source folder): ``concepts.yaml`` listing
    ``entries`` as given, and each folder of ``images`` (a path relative to ``root``)
    holding its images as ``00.png``, ``01.png``... Without ``images``, every entry's
    image folder (its ``folder``, else its ``name``) and its ``reference`` folder, if it
    has one, get three 16-pixel images of one flat colour that no other folder has."""
    import yaml

    if images is None:
        folders = [f for e in entries for f in (e.get("folder", e.get("name")), e.get("reference")) if f]
        images = {
            folder: [Image.new("RGB", (16, 16), (40 * i % 256, 8 * n, 255 - 40 * i % 256)) for n in range(3)]
            for i, folder in enumerate(dict.fromkeys(folders))
        }
    for folder, pictures in images.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for n, picture in enumerate(pictures):
            picture.save(root / folder / f"{n:02d}.png")
    root.mkdir(parents=True, exist_ok=True)
    (root / "concepts.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    return root


def synthetic_concept_images(domain: str, n: int, resolution: int = 32) -> list[tuple[object, list, list]]:
    """The first ``n`` concepts of the synthetic world with their training and reference
    images, rendered at ``resolution``: (Concept, train, reference), for a folder of
    concepts whose images a tiny model can learn."""
    import tempfile

    from continual_lora.data.concepts import read_concept
    from continual_lora.data.sources import make_source

    source = make_source(domain, {"source": "synthetic", "resolution": resolution, "n_reference": 2})
    rendered = []
    with tempfile.TemporaryDirectory() as scratch:
        for concept in source.concepts(n):
            source.prepare(concept, Path(scratch) / concept.name)
            prepared = read_concept(Path(scratch) / concept.name)
            rendered.append((concept, prepared.load_train_images(), prepared.load_reference_images()))
    return rendered
