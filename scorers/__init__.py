"""Scorer registry. Plugging in a scorer: one module in this package plus one import line below."""
from scorers.base import (  # noqa: F401, I001 (the registry lines below keep their order)
    Availability,
    DecodedImage,
    Metric,
    Scorer,
    UnknownScorer,
    WeightsUnavailable,
    get_scorer_class,
    register,
    registered,
)

# Registry lines: importing a module registers its scorers, in this order.
from scorers import classic  # noqa: F401,E402
from scorers import degradation  # noqa: F401,E402
from scorers import phash  # noqa: F401,E402
from scorers import clip  # noqa: F401,E402
from scorers import face  # noqa: F401,E402
from scorers import brisque  # noqa: F401,E402
