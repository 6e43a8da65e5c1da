"""SageMaker requests checked against botocore's service model before they are sent: botocore's own checks
(required keys, types, minimums) and the model's enums, patterns and maximums, which the service checks and
botocore does not. A bad request fails here with every problem named, not as one opaque 400 from AWS."""

import re

import botocore.session
from botocore.validate import ParamValidator


def validate(request: dict, operation: str) -> None:
    """Raise ValueError if botocore's SageMaker model rejects the request: botocore's own checks (required keys,
    types, minimums) and the model's enums, patterns and maximums, which the service checks and botocore does not."""
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        raise ValueError(f"{operation} request is invalid:\n{report.generate_report()}")
    errors = _constraint_errors(request, shape, "")
    if errors:
        raise ValueError(f"{operation} request is invalid:\n" + "\n".join(errors))


def _constraint_errors(value, shape, path: str) -> list[str]:
    meta, errors = shape.metadata, []
    if shape.type_name == "structure":
        for key, item in value.items():
            errors += _constraint_errors(item, shape.members[key], f"{path}.{key}".lstrip("."))
    elif shape.type_name in ("list", "map"):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} entries, at most {meta['max']}")
        items = enumerate(value) if shape.type_name == "list" else value.items()
        for key, item in items:
            if shape.type_name == "map":
                errors += _constraint_errors(key, shape.key, f"{path} key {key!r}")
            errors += _constraint_errors(item, shape.member if shape.type_name == "list" else shape.value,
                                         f"{path}[{key!r}]" if shape.type_name == "map" else f"{path}[{key}]")
    elif shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {', '.join(shape.enum)}")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} characters, at most {meta['max']}")
        try:
            if "pattern" in meta and not re.fullmatch(meta["pattern"], value, re.DOTALL):
                errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
        except re.error:  # a Java-only construct (\p{...}): the service checks it
            pass
    elif shape.type_name in ("integer", "long") and "max" in meta and value > meta["max"]:
        errors.append(f"{path}: {value}, at most {meta['max']}")
    return errors
