"""Fashion-MNIST classification, fast: data, models, a compiled train step per backend.

Importing this package imports no framework; :mod:`fashion_core.models` and
:mod:`fashion_core.train` import Keras (and with it the backend ``KERAS_BACKEND`` names).

It does decide the backend, because Keras reads ``KERAS_BACKEND`` once, when it is first
imported: where the variable is unset, the first of TensorFlow, JAX and PyTorch that is
installed (see :func:`fashion_core.backends.choose_backend`), and the variable is set
to it. ``BACKEND_CHOICE`` says which and why; where no framework is installed it says
what to install, and importing :mod:`fashion_core.data` still works.
"""

from fashion_core.backends import BackendChoice, select_backend

__version__ = "0.1.0"

BACKEND_CHOICE: BackendChoice = select_backend()

__all__ = ["BACKEND_CHOICE", "BackendChoice", "__version__"]
