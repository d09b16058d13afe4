"""Fashion-MNIST classification, fast: data, models, a compiled train step per backend.

Importing this package imports no framework; :mod:`fashion_core.models` and
:mod:`fashion_core.train` import Keras (and with it the backend ``KERAS_BACKEND`` names).
"""

__version__ = "0.1.0"
