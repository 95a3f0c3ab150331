"""Putting a trained parser to work: batch prediction, an HTTP service with a web page, ONNX export.

Heavy dependencies (FastAPI, onnxruntime) are imported by the modules that need them, so importing this
package stays light:

* :mod:`~fashionparse.serving.predictor` -- ``load_predictor(path)``: a checkpoint or a ``.onnx`` file.
* :mod:`~fashionparse.serving.predict` -- ``predict_files``: files/folders/globs -> DF2 submission JSON.
* :mod:`~fashionparse.serving.app` -- ``create_app``: the FastAPI service and its web page.
* :mod:`~fashionparse.serving.onnx_export` / :mod:`~fashionparse.serving.onnx_predictor` -- ONNX.
* :mod:`~fashionparse.serving.commands` -- the ``predict``, ``serve`` and ``export`` click commands.
"""

from fashionparse.serving.predictor import Predictor, describe_predictor, load_predictor

__all__ = ["Predictor", "describe_predictor", "load_predictor"]
