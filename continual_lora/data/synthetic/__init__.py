"""Procedural, offline synthetic world standing in for the paper's datasets.

The paper personalises a pretrained text-to-image model with DreamBooth objects
and UnlearnCanvas styles.  Neither dataset (nor a large pretrained model) fits
this project, so this package draws a small world that keeps the properties the
experiments rely on:

* generic class images (``render_class_image``) teach a tiny model what a
  "ball" or a "house" looks like; they are always plainly coloured, so that a
  patterned instance is something the pretrained model cannot already draw;
* object concepts (``render_object``) are one fixed, patterned instance of a
  class whose look survives changes of pose and background, which is what a
  rare token has to bind to;
* style concepts (``render_styled``) are global looks that can be recognised on
  any subject, so a style learnt on one class can be checked on the others.

Everything is pure PIL + numpy and fully determined by the numpy Generator
passed in, so the same seed always gives identical pixels.

The code lives in three modules, each importing only those before it:
``catalogue`` lists the classes, patterns and concepts (all the workflow's DAG
and the config checks read) without any drawing code; ``drawing`` holds the
geometry, colours, scene assembly, the class and object renderers and the
pretraining examples; ``styles`` holds the style renderers and
``render_styled``.  The public API is re-exported here, so importing any part
of the package loads all three.
"""

from continual_lora.data.synthetic.catalogue import (
    GENERIC_CLASSES,
    MAX_OBJECT_CONCEPTS,
    MAX_STYLE_CONCEPTS,
    OBJECT_PATTERNS,
    STYLE_NAMES,
    ObjectConcept,
    StyleConcept,
    object_concepts,
    style_concepts,
    style_subjects,
)
from continual_lora.data.synthetic.drawing import IMAGE_SIZE, pretraining_examples, render_class_image, render_object
from continual_lora.data.synthetic.styles import render_styled

__all__ = [
    "IMAGE_SIZE",
    "GENERIC_CLASSES",
    "OBJECT_PATTERNS",
    "STYLE_NAMES",
    "MAX_OBJECT_CONCEPTS",
    "MAX_STYLE_CONCEPTS",
    "ObjectConcept",
    "StyleConcept",
    "object_concepts",
    "style_concepts",
    "render_class_image",
    "render_object",
    "render_styled",
    "pretraining_examples",
    "style_subjects",
]
