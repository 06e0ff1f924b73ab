"""MatFormer nested widths (placeholder of the integration branch: replaced by the real module)."""

NAME = "nested"
DESCRIPTION = "nested FFN widths"


def expand(teacher, settings):
    raise NotImplementedError


def step(model, record, context):
    raise NotImplementedError


def token_step(token, model, record, context):
    raise NotImplementedError
