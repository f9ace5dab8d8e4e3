"""Datasets: the prepared-data contract, and the sources that fill it.

The sources on disk are imported here so that they register themselves in
``continual_lora.data.sources.SOURCES`` whichever module of the package is imported
first (the workflow imports ``sources``, the tests ``concepts`` or ``synthetic``).
"""

from continual_lora.data import dreambooth, folder, unlearncanvas  # noqa: F401
