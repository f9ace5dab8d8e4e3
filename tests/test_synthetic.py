import ast
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from continual_lora.data import synthetic as S


def _rng(*seed):
    return np.random.default_rng(list(seed))


def _hist(images, bins=4):
    """Mean normalised joint RGB histogram of a set of images."""
    total = np.zeros(bins**3)
    for im in images:
        q = (np.asarray(im, dtype=np.int64) * bins) // 256
        idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        total += np.bincount(idx.ravel(), minlength=bins**3) / idx.size
    return total / len(images)


def _foreground_hist(images, bins=4):
    """Like _hist, over pixels that differ from their row's background.

    Backgrounds are random and vertical (plain, gradient or floor line), so
    the median of each row's edge pixels estimates the background there;
    leaving it out keeps the comparison about the object itself.
    """
    total = np.zeros(bins**3)
    for im in images:
        a = np.asarray(im, dtype=np.int64)
        row_bg = np.median(np.concatenate([a[:, :2], a[:, -2:]], axis=1), axis=1)
        fg = np.abs(a - row_bg[:, None, :]).sum(-1) > 45
        assert fg.mean() > 0.03  # the object is actually there
        q = (a[fg] * bins) // 256
        idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
        total += np.bincount(idx, minlength=bins**3) / idx.size
    return total / len(images)


def _l1(a, b):
    return float(np.abs(a - b).sum())


# ---------------------------------------------------------------------------
# Package layout


def test_package_modules_depend_one_way_and_share_only_public_names():
    # catalogue <- drawing <- styles: listing concepts must not need the drawing
    # code, and a private name stays free to change inside its own module.
    package = Path(S.__file__).parent
    may_import = {"catalogue": set(), "drawing": {"catalogue"}, "styles": {"catalogue", "drawing"}}
    for module, allowed in may_import.items():
        tree = ast.parse((package / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, (module, "relative import")
                targets = [(node.module, [a.name for a in node.names])]
            else:
                continue
            for target, names in targets:
                assert target != S.__name__, (module, "imports the package, whose __init__ imports it")
                if target.startswith(S.__name__ + "."):
                    assert target.rsplit(".", 1)[1] in allowed, (module, target)
                    assert not [n for n in names if n.startswith("_")], (module, target, names)
                if module == "catalogue":
                    assert target.split(".")[0] != "PIL", target
    # The package re-exports the whole public API.
    assert all(hasattr(S, name) for name in S.__all__)


# ---------------------------------------------------------------------------
# Vocabulary


def test_class_words_are_single_lowercase_words():
    assert len(S.GENERIC_CLASSES) >= 8
    assert len(set(S.GENERIC_CLASSES)) == len(S.GENERIC_CLASSES)
    for c in S.GENERIC_CLASSES:
        assert re.fullmatch(r"[a-z]+", c), c


def test_object_concepts_names_unique_path_safe_and_distinct():
    concepts = S.object_concepts(S.MAX_OBJECT_CONCEPTS, seed=0)
    assert S.MAX_OBJECT_CONCEPTS >= 30
    assert len(concepts) == S.MAX_OBJECT_CONCEPTS
    names = [c.name for c in concepts]
    assert len(set(names)) == len(names)
    for c in concepts:
        assert re.fullmatch(r"[a-z0-9_]+", c.name), c.name
        assert c.class_word in S.GENERIC_CLASSES
        assert c.pattern in S.OBJECT_PATTERNS
        hash(c)  # frozen and hashable, usable as dict keys
    assert len({(c.class_word, c.pattern) for c in concepts}) == len(concepts)
    # The first round covers every class once before any class repeats.
    first = concepts[: len(S.GENERIC_CLASSES)]
    assert sorted(c.class_word for c in first) == sorted(S.GENERIC_CLASSES)
    # Two pattern colours always differ.
    assert all(c.colors[0] != c.colors[1] for c in concepts)


def test_object_concepts_deterministic_prefix_and_seeded():
    a = S.object_concepts(30, seed=3)
    assert a == S.object_concepts(30, seed=3)
    assert S.object_concepts(10, seed=3) == a[:10]
    assert S.object_concepts(30, seed=4) != a
    assert S.object_concepts(0, seed=3) == []


def test_pattern_scale_multiplies_every_concept_period_and_changes_nothing_else():
    plain = S.object_concepts(S.MAX_OBJECT_CONCEPTS, seed=2)
    coarse = S.object_concepts(S.MAX_OBJECT_CONCEPTS, seed=2, pattern_scale=2.0)
    for a, b in zip(plain, coarse):
        # Doubling is exact in floating point, so the periods are exactly twice as long.
        assert b.pattern_period == 2 * a.pattern_period
        assert dataclasses.replace(b, pattern_period=a.pattern_period) == a
    with pytest.raises(ValueError, match="pattern_scale"):
        S.object_concepts(3, seed=0, pattern_scale=0)


def test_too_many_concepts_raise():
    with pytest.raises(ValueError, match="object concepts"):
        S.object_concepts(S.MAX_OBJECT_CONCEPTS + 1, seed=0)
    with pytest.raises(ValueError, match="style concepts"):
        S.style_concepts(S.MAX_STYLE_CONCEPTS + 1, seed=0)
    with pytest.raises(ValueError):
        S.object_concepts(-1, seed=0)


def test_style_concepts_names_and_determinism():
    assert S.MAX_STYLE_CONCEPTS >= 10
    styles = S.style_concepts(S.MAX_STYLE_CONCEPTS, seed=0)
    names = [s.name for s in styles]
    assert len(set(names)) == len(names) == S.MAX_STYLE_CONCEPTS
    for n in names:
        assert re.fullmatch(r"[a-z]+", n), n
        assert n not in S.GENERIC_CLASSES
    assert S.style_concepts(10, seed=0) == styles[:10]
    assert S.style_concepts(10, seed=1) != styles[:10]
    assert S.style_concepts(5, seed=7) == S.style_concepts(5, seed=7)


def test_style_subjects_hold_out_train_class():
    for seed in range(3):
        for style in S.style_concepts(S.MAX_STYLE_CONCEPTS, seed=seed):
            train, refs = S.style_subjects(style, seed)
            assert train in S.GENERIC_CLASSES
            assert train not in refs
            assert sorted(refs + [train]) == sorted(S.GENERIC_CLASSES)
            assert S.style_subjects(style, seed) == (train, refs)
    # Not every style trains on the same class.
    trains = {S.style_subjects(s, 0)[0] for s in S.style_concepts(S.MAX_STYLE_CONCEPTS, 0)}
    assert len(trains) > 1


# ---------------------------------------------------------------------------
# Rendering


@pytest.mark.parametrize("size", [64, 32, 48])
def test_all_renderers_return_rgb_of_requested_size(size):
    concept = S.object_concepts(1, seed=0)[0]
    images = [S.render_class_image(c, _rng(1), size) for c in S.GENERIC_CLASSES]
    images.append(S.render_object(concept, _rng(1), size))
    images += [S.render_styled(s, "ball", _rng(1), size) for s in S.style_concepts(S.MAX_STYLE_CONCEPTS, 0)]
    for im in images:
        assert isinstance(im, Image.Image)
        assert im.mode == "RGB"
        assert im.size == (size, size)


def test_default_size():
    assert S.render_class_image("tree", _rng(0)).size == (S.IMAGE_SIZE, S.IMAGE_SIZE)


def test_rendering_is_deterministic_and_seed_dependent():
    concept = S.object_concepts(5, seed=1)[4]
    renders = [
        lambda r: S.render_class_image("house", r),
        lambda r: S.render_object(concept, r),
    ] + [
        (lambda st: (lambda r: S.render_styled(st, "fish", r)))(st)
        for st in S.style_concepts(S.MAX_STYLE_CONCEPTS, 0)
    ]
    for render in renders:
        a, b, c = render(_rng(11)), render(_rng(11)), render(_rng(12))
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() != c.tobytes()


def test_unknown_class_and_style_raise():
    with pytest.raises(ValueError, match="Unknown class"):
        S.render_class_image("spaceship", _rng(0))
    with pytest.raises(ValueError, match="Unknown style"):
        S.render_styled(S.StyleConcept("nosuchstyle", "x"), "ball", _rng(0))


def test_images_are_not_blank():
    for c in S.GENERIC_CLASSES:
        arr = np.asarray(S.render_class_image(c, _rng(5)), dtype=np.float32)
        assert arr.std() > 10, c


def test_object_concept_is_consistent_and_distinct_from_its_class():
    # A concept's renders should resemble each other (same colours and
    # pattern) much more than they resemble generic renders of the same class.
    # The factor 2 leaves margin: over 3 seeds x 48 concepts the worst ratio
    # observed when this test was written was ~4.8.
    for concept in S.object_concepts(S.MAX_OBJECT_CONCEPTS, seed=0)[:16]:
        a = _foreground_hist([S.render_object(concept, _rng(1, i)) for i in range(6)])
        b = _foreground_hist([S.render_object(concept, _rng(2, i)) for i in range(6)])
        g = _foreground_hist([S.render_class_image(concept.class_word, _rng(3, i)) for i in range(6)])
        assert 2.0 * _l1(a, b) < _l1(a, g), concept.name


def test_object_concept_instance_is_fixed_across_renders():
    # With pose and background drawn from the rng, the set of object colours
    # must not change: the patterned colours appear in every render.
    concept = S.object_concepts(3, seed=2)[0]
    for i in range(4):
        arr = np.asarray(S.render_object(concept, _rng(9, i)), dtype=np.int64)
        for colour in concept.colors[:2]:
            close = (np.abs(arr - np.asarray(colour)).sum(-1) < 60).mean()
            assert close > 0.005, (concept.name, colour)


def test_style_is_recognisable_on_held_out_classes():
    # A style's look should transfer: renders of held-out classes in the
    # style are closer to its training-class renders than plain renders of
    # those same held-out classes are.
    for style in S.style_concepts(S.MAX_STYLE_CONCEPTS, seed=0):
        train, refs = S.style_subjects(style, 0)
        t = _hist([S.render_styled(style, train, _rng(1, i)) for i in range(5)])
        r = _hist([S.render_styled(style, c, _rng(2, i)) for i, c in enumerate(refs)])
        g = _hist([S.render_class_image(c, _rng(2, i)) for i, c in enumerate(refs)])
        assert _l1(t, r) < _l1(t, g), style.name


def test_styles_differ_from_each_other():
    styles = S.style_concepts(S.MAX_STYLE_CONCEPTS, seed=0)
    hists = {s.name: _hist([S.render_styled(s, c, _rng(4, i)) for i, c in enumerate(S.GENERIC_CLASSES)])
             for s in styles}
    names = list(hists)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert _l1(hists[a], hists[b]) > 0.15, (a, b)


# ---------------------------------------------------------------------------
# Pretraining data


def test_pretraining_examples_cycle_classes_with_class_level_prompts():
    n = 3 * len(S.GENERIC_CLASSES)
    examples = S.pretraining_examples(n, seed=0, size=32)
    assert len(examples) == n
    forbidden = {c.name for c in S.object_concepts(S.MAX_OBJECT_CONCEPTS, 0)}
    forbidden |= set(S.STYLE_NAMES) | set(S.OBJECT_PATTERNS)
    counts = dict.fromkeys(S.GENERIC_CLASSES, 0)
    for i, (im, prompt) in enumerate(examples):
        assert im.size == (32, 32) and im.mode == "RGB"
        cls = S.GENERIC_CLASSES[i % len(S.GENERIC_CLASSES)]
        assert prompt in (f"a photo of a {cls}", f"image of a {cls}")
        assert not set(re.findall(r"[a-z0-9_]+", prompt)) & forbidden
        counts[cls] += 1
    assert set(counts.values()) == {3}


def test_pretraining_prompts_use_both_phrasings():
    prompts = [p for _, p in S.pretraining_examples(80, seed=1, size=16)]
    photo = sum(p.startswith("a photo of") for p in prompts)
    image = sum(p.startswith("image of") for p in prompts)
    assert photo + image == 80
    assert photo > image > 0


def test_pretraining_examples_deterministic_and_prefix_stable():
    a = S.pretraining_examples(10, seed=5, size=32)
    b = S.pretraining_examples(12, seed=5, size=32)
    c = S.pretraining_examples(10, seed=6, size=32)
    assert [(im.tobytes(), p) for im, p in a] == [(im.tobytes(), p) for im, p in b[:10]]
    assert [im.tobytes() for im, _ in a] != [im.tobytes() for im, _ in c]


def test_a_patterned_corpus_names_what_each_patterned_example_shows():
    n = 400
    examples = S.pretraining_examples(n, seed=0, size=32, patterned_fraction=0.25, pattern_scale=2.0)
    plain = S.pretraining_examples(n, seed=0, size=32)
    named = re.compile(r"a photo of an? (?P<ground>[a-z]+) and (?P<figure>[a-z]+) (?P<pattern>[a-z]+) (?P<cls>[a-z]+)")
    n_named = 0
    for i, ((im, prompt), (plain_im, plain_prompt)) in enumerate(zip(examples, plain)):
        cls = S.GENERIC_CLASSES[i % len(S.GENERIC_CLASSES)]
        match = named.fullmatch(prompt)
        if match is None:
            # The other examples are the plain corpus's, untouched.
            assert (im.tobytes(), prompt) == (plain_im.tobytes(), plain_prompt)
            continue
        n_named += 1
        assert match["cls"] == cls and match["pattern"] in S.OBJECT_PATTERNS
        assert match["ground"] != match["figure"]
        assert {match["ground"], match["figure"]} <= set(S.catalogue.NAMED_COLOURS)
        assert im.size == (32, 32)
    # A binomial(400, 0.25) count: 100 expected, outside 70..130 with probability < 1e-3.
    assert 70 <= n_named <= 130
    again = S.pretraining_examples(n, seed=0, size=32, patterned_fraction=0.25, pattern_scale=2.0)
    assert [(im.tobytes(), p) for im, p in again] == [(im.tobytes(), p) for im, p in examples]


def test_a_named_ground_corpus_stands_plain_classes_on_the_ground_it_names():
    n = 400
    examples = S.pretraining_examples(
        n, seed=0, size=32, patterned_fraction=0.25, pattern_scale=2.0, named_ground_fraction=0.4
    )
    without = S.pretraining_examples(n, seed=0, size=32, patterned_fraction=0.25, pattern_scale=2.0)
    named = re.compile(r"(?P<ground>[a-z]+) image of an? (?P<cls>[a-z]+)")
    grounds = []
    for i, ((im, prompt), (before_im, before_prompt)) in enumerate(zip(examples, without)):
        match = named.fullmatch(prompt)
        if match is None or match["ground"] not in S.drawing.GROUND_COLOURS:
            # The patterned examples and the other plain ones are those of the corpus
            # without grounds.
            assert (im.tobytes(), prompt) == (before_im.tobytes(), before_prompt)
            continue
        cls = S.GENERIC_CLASSES[i % len(S.GENERIC_CLASSES)]
        assert match["cls"] == cls
        # Only plain examples get a ground: the patterned ones keep theirs.
        assert before_prompt in (f"a photo of a {cls}", f"image of a {cls}")
        # The top row's corners are the named colour: every kind of ground starts from it.
        rgb = np.asarray(im, dtype=np.int64)
        colour = np.asarray(S.drawing.GROUND_COLOURS[match["ground"]])
        assert np.abs(rgb[0, [0, -1]] - colour).max() <= 3, (prompt, rgb[0, [0, -1]])
        grounds.append(match["ground"])
    # 0.4 of the about 300 plain examples: about 120; outside 85..155 with
    # probability < 1e-3.
    assert 85 <= len(grounds) <= 155
    # Every ground colour comes: the dark ones that styles stand on, and the concepts'
    # named colours and the muted tones beside them.
    assert set(grounds) == set(S.drawing.GROUND_COLOURS)
    assert set(S.catalogue.NAMED_COLOURS) < set(S.drawing.GROUND_COLOURS)


def test_a_patterned_instance_shows_its_named_colours_as_a_concept_would():
    instance = S.catalogue.patterned_instance("cube", _rng(4), pattern_scale=2.0)
    ground, figure, _ = instance.colors
    assert S.catalogue._colour_distance(*instance.colour_names[:2]) > 190
    image = np.asarray(S.render_object(instance, _rng(5), 64), dtype=np.int64)
    for colour in (ground, figure):
        near = np.abs(image - np.asarray(colour)).sum(-1) < 60
        assert near.mean() > 0.01, f"{colour} covers {near.mean():.3f} of the image"
