"""Low-rank factorisation (placeholder of the integration branch: replaced by the real module)."""

NAME = "lowrank"
DESCRIPTION = "low-rank factorisation"
OPS = ("lowrank",)


def apply_op(model, op):
    raise NotImplementedError


def step(model, record, context):
    raise NotImplementedError
