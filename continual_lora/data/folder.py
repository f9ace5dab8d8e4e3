"""A user's own concepts: one folder of images per concept, listed in ``concepts.yaml``.

``dataset.path`` is a folder holding ``concepts.yaml`` and the concepts' image folders::

    my_concepts/
      concepts.yaml
      my_dog/            01.jpg 02.jpg ...
      red_mug/           ...

``concepts.yaml`` is a list with one item per concept, in the task list's canonical
order (the first ``n_tasks`` are the experiment's tasks; each run's order seed then
shuffles them). The experiment's domain decides the fields:

- objects: ``name``, ``token`` (a rare word the concept is bound to, e.g. sks) and
  ``class`` (what it is, e.g. dog); its prompt defaults to "a photo of {token} {class}"
  and the evaluation templates are filled with "{token} {class}";
- styles: ``name``, ``style`` (the word the look is called by, e.g. watercolor) and
  ``class`` (what the training images show); its prompt defaults to
  "{style} image of {class}" and the templates are filled with the style word;

as the synthetic source's concepts are. Either may set ``prompt`` (the training prompt;
it must contain the token or style word, which is what the concept is learnt under),
``folder`` (its images' folder, relative to ``dataset.path``; default: ``name``) and
``reference`` (a folder of images the metrics compare samples with; default: the
training images themselves, as for DreamBooth). ``name`` names the concept's folders
under results/ and its workflow wildcard, so it is lower-case letters, digits and '_'.

The file is read whole whenever the workflow loads, so a typo anywhere in it stops the
workflow before any job; the images are opened for the first ``n_tasks`` concepts only.
They are copied as they are (``continual_lora.data.concepts``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from continual_lora.data.concepts import Concept, copy_concept
from continual_lora.data.sources import (
    CONCEPT_NAME,
    DatasetError,
    DatasetSource,
    check_image_folder,
    dataset_root,
    path_safe,
)

CONCEPTS_FILE = "concepts.yaml"
# The fields a concept of each domain must have, then those it may have.
REQUIRED = {"objects": ("name", "token", "class"), "styles": ("name", "style", "class")}
OPTIONAL = ("prompt", "folder", "reference")
KIND = {"objects": "an object", "styles": "a style"}
DEFAULT_PROMPT = {"objects": "a photo of {token} {class}", "styles": "{style} image of {class}"}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping: PyYAML would keep the last
    silently, and a concept's second ``prompt:`` is a copy-and-paste slip, not a choice."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            # A mapping's own plain keys; merged ones (<<: *anchor) may be overridden.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if (key_node.tag, key_node.value) in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key_node.value!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class FolderEntry:
    """One item of ``concepts.yaml``: the concept, and where its images are."""

    position: int  # 1-based, as the messages count
    concept: Concept
    folder: str
    reference: str | None


class FolderSource(DatasetSource):
    """Concepts the user lists and photographs: nothing is drawn or selected, so the
    file's order is the canonical order and its fields are the concepts' own."""

    name = "folder"
    settings_keys = ("path",)
    expected_content = "your own concepts (one folder of images per concept and concepts.yaml listing them)"

    @cached_property
    def root(self) -> Path:
        return dataset_root(self.settings)

    @cached_property
    def file(self) -> Path:
        return self.root / CONCEPTS_FILE

    def concepts(self, n: int) -> list[Concept]:
        entries = self._entries
        if n > len(entries):
            raise DatasetError("n_tasks", f"{n} exceeds the {len(entries)} concepts that file {str(self.file)!r} lists")
        return [entry.concept for entry in entries[:n]]

    def check(self, n: int) -> list[Concept]:
        concepts = super().check(n)
        for entry in self._entries[:n]:
            self._images(entry)
        return concepts

    def prepare(self, concept: Concept, out_dir: str | Path) -> None:
        entry = next((e for e in self._entries if e.concept.name == concept.name), None)
        if entry is None:
            raise ValueError(f"concept {concept.name!r} is not listed in {str(self.file)!r}")
        train, reference = self._images(entry)
        copy_concept(out_dir, concept, train=train, reference=reference)

    def _images(self, entry: FolderEntry) -> tuple[list[Path], list[Path]]:
        """The concept's training and reference images, each opened (check_image_folder)."""
        train = check_image_folder(self._folder(entry, entry.folder, "image"))
        if entry.reference is None:
            return train, train
        return train, check_image_folder(self._folder(entry, entry.reference, "reference"))

    def _folder(self, entry: FolderEntry, relative: str, kind: str) -> Path:
        folder = self.root / relative
        if not folder.is_dir():
            hint = "; put its images there or name their folder with folder:" if kind == "image" else ""
            label = _label(entry.position, entry.concept.name)
            raise self._problem(f"lists {label}, whose {kind} folder {str(folder)!r} is not a directory{hint}")
        return folder

    @cached_property
    def _entries(self) -> list[FolderEntry]:
        """Every concept of ``concepts.yaml``, each checked against the domain's fields,
        then all of them for names, tokens, style words and folders used twice."""
        items = self._read()
        entries = [self._entry(position, item) for position, item in enumerate(items, start=1)]
        word = "token" if self.domain == "objects" else "style"
        for field, value_of in (
            ("name", lambda e: e.concept.name),
            (word, lambda e: e.concept.token if self.domain == "objects" else e.concept.subject),
            ("image folder", lambda e: PurePosixPath(e.folder).as_posix()),
        ):
            seen: dict[str, int] = {}
            for entry in entries:
                value = value_of(entry)
                if value in seen:
                    raise self._problem(
                        f"gives concepts {seen[value]} and {entry.position} the same {field} {value!r}; "
                        f"each concept needs its own {field}"
                    )
                seen[value] = entry.position
        return entries

    def _read(self) -> list:
        if not self.file.is_file():
            fields = " and ".join(REQUIRED[self.domain][1:])
            raise DatasetError(
                "dataset.path",
                f"{str(self.root)!r} has no {CONCEPTS_FILE}; expected one there listing each concept "
                f"(its name, {fields}) beside the concepts' image folders",
            )
        try:
            items = yaml.load(self.file.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or error
            raise self._problem(f"is not valid YAML ({problem}{where}); fix its syntax") from None
        except (OSError, UnicodeDecodeError) as error:
            raise self._problem(f"cannot be read ({error})") from None
        if items is None or items == []:
            raise self._problem("lists no concepts; write each concept as an item '- name: ...'")
        if not isinstance(items, list):
            raise self._problem(
                f"holds {_kind(items)}, not a list of concepts; write each concept as an item '- name: ...'"
            )
        return items

    def _entry(self, position: int, item: Any) -> FolderEntry:
        domain = self.domain
        required, allowed = REQUIRED[domain], (*REQUIRED[domain], *OPTIONAL)
        shape = f"{KIND[domain]} concept has {', '.join(required)} and optionally {', '.join(OPTIONAL)}"
        if not isinstance(item, dict):
            raise self._problem(
                f"has as concept {position} {_kind(item)} {item!r}, not a mapping of its fields ({shape})"
            )
        label = _label(position, item.get("name") if isinstance(item.get("name"), str) else None)
        for key in item:
            if key in allowed:
                continue
            other = "styles" if domain == "objects" else "objects"
            if key in REQUIRED[other]:
                raise self._problem(
                    f"gives {label} a {key}, which only {KIND[other].split()[1]} concepts have, but the "
                    f"experiment's domain is {domain} ({shape})"
                )
            guess = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            raise self._problem(f"gives {label} the unknown key {key!r}{hint}; {shape}")
        missing = [key for key in required if key not in item]
        if missing:
            raise self._problem(f"gives {label} no {' or '.join(missing)}; {shape}")
        for key, value in item.items():
            if isinstance(value, str) and value.strip():
                continue
            if value is None or (isinstance(value, str) and not value.strip()):
                leave = " or leave the key out" if key in OPTIONAL else ""
                raise self._problem(f"gives {label} an empty {key}; write it out{leave}")
            raise self._problem(
                f"gives {label} the {key} {value!r} ({_kind(value)}), not text; put it in quotes"
            )
        name = item["name"]
        if not CONCEPT_NAME.fullmatch(name):
            raise self._problem(
                f"gives {label} a name that is not usable as a folder name and wildcard (expected lower-case "
                f"letters, digits and '_', such as {path_safe(name) or 'concept_1'!r}); its image folder may keep "
                "its own name, given as folder:"
            )
        if domain == "objects" and re.search(r"\s", item["token"]):
            raise self._problem(
                f"gives {label} the token {item['token']!r}, which is not one word; choose a rare word such as 'sks'"
            )
        word = item["token"] if domain == "objects" else item["style"]
        prompt = item.get("prompt", DEFAULT_PROMPT[domain].format(**item))
        if not re.search(rf"(?<!\w){re.escape(word)}(?!\w)", prompt, flags=re.IGNORECASE):
            kind = "token" if domain == "objects" else "style word"
            raise self._problem(
                f"gives {label} the prompt {prompt!r}, which does not contain its {kind} {word!r}, "
                f"the word the concept is learnt under"
            )
        for key in ("folder", "reference"):
            if key in item and not _inside(item[key]):
                raise self._problem(
                    f"gives {label} the {key} {item[key]!r}, which is not a folder inside {str(self.root)!r}; "
                    "give it relative to dataset.path"
                )
        class_word = item["class"]
        concept = Concept(
            name=name,
            domain=domain,
            prompt=prompt,
            subject=f"{word} {class_word}" if domain == "objects" else word,
            class_word=class_word,
            token=word if domain == "objects" else None,
        )
        return FolderEntry(position, concept, folder=item.get("folder", name), reference=item.get("reference"))

    def _problem(self, detail: str) -> DatasetError:
        return DatasetError("dataset.path", f"file {str(self.file)!r} {detail}")


def _label(position: int, name: str | None) -> str:
    return f"concept {position} ({name!r})" if name else f"concept {position}"


def _kind(value: Any) -> str:
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a true/false value", int: "a number"}
    return kinds.get(type(value), "a number" if isinstance(value, float) else f"a {type(value).__name__}")


def _inside(relative: str) -> bool:
    """Whether ``relative`` names a folder below the dataset's own folder (which keeps the
    dataset, and so the experiment, in one movable place)."""
    path = PurePosixPath(relative.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and path.parts not in ((), (".",))

