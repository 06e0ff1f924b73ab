"""MLflow "models from code" entry point: MLflow runs this file to build the pyfunc.

Logging the model by file path instead of a Python object means nothing is
pickled into the registry; the class comes from ``tasks.serving`` (shipped as
code beside the model).
"""

import mlflow.models

from tasks.serving import FormerflowModel

mlflow.models.set_model(FormerflowModel())
