"""The typed shape of every request body the server accepts (pydantic, strict, unknown fields refused).

These checks run on the raw bytes before anything reaches the database: pydantic's JSON parser
bounds nesting depth and reads any integer, so a 400-digit number, an integer of 2^63 or more, a
boolean where a number belongs or a body nested 10,000 deep all become a 400 naming the field
(sqlite would overflow on a 64-bit bind, `json.loads` would recurse). `db.Store` checks the
answer's meaning (inside the image, click order, one click for 1Point) on the validated values.
"""
from __future__ import annotations

from typing import Annotated

import pydantic

from pointseg_jax.annotate import db

# Ids and sequence numbers stay far below SQLite's 2^63 - 1.
Id = Annotated[int, pydantic.Field(ge=0, le=2**62)]
_STRICT = pydantic.ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Click(pydantic.BaseModel):
  model_config = _STRICT
  x: float
  y: float
  t: Annotated[int, pydantic.Field(ge=0, le=db.MAX_MS)]


class Answer(pydantic.BaseModel):
  """POST /api/answer: one image's answer (docs/annotate.md, "HTTP API")."""
  model_config = _STRICT
  key: Annotated[str, pydantic.Field(min_length=16, max_length=64, pattern=r"^[0-9a-fA-F-]+$")]
  assignment: Id
  pos: Id
  absent: bool
  clicks: Annotated[list[Click], pydantic.Field(max_length=db.MAX_CLICKS)]
  duration_ms: Annotated[int, pydantic.Field(ge=0, le=db.MAX_MS)]
  seq: Annotated[int, pydantic.Field(ge=1, le=2**62)]


class Finish(pydantic.BaseModel):
  """POST /api/finish."""
  model_config = _STRICT
  assignment: Id


class AnnotatorName(pydantic.BaseModel):
  """POST /api/admin/{add,revoke,rotate}: the annotator it is about."""
  model_config = _STRICT
  name: Annotated[str, pydantic.Field(min_length=1, max_length=64)]


def parse(model: type[pydantic.BaseModel], body: bytes) -> dict:
  """The body as `model` (a plain dict for db.Store), or db.RequestError naming the first problem."""
  try:
    return model.model_validate_json(body).model_dump()
  except pydantic.ValidationError as e:
    err = e.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "json_invalid":
      raise db.RequestError(f"malformed JSON ({err['msg']})") from None
    if err["type"] == "model_type" and not where:
      raise db.RequestError("request body must be a JSON object") from None
    if err["type"] == "extra_forbidden":
      raise db.RequestError(f"fields ['{err['loc'][-1]}'] are not known"
                            + (f" (in {where})" if len(err["loc"]) > 1 else "")) from None
    if err["type"] == "missing":
      raise db.RequestError(f"fields ['{err['loc'][-1]}'] are missing") from None
    raise db.RequestError(f"{where}: {err['msg']}") from None
