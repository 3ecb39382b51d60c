"""JSON as the worker reads and writes it, shared by the worker's answers and the metrics SDK.

Integers are exact at any size; a number a float cannot hold is kept exactly (ExactNumber);
NaN and Infinity are refused both ways (they are not JSON); numpy arrays and scalars and
Decimals are written as numbers. See docs/workers.md.
"""

import decimal
import json
import math
import re
import uuid


class ExactNumber(decimal.Decimal):
    """A JSON number a float cannot hold (1e400 would be inf, 1e-400 would be 0.0), kept as a
    Decimal that remembers its text: returned unchanged, it is written back exactly as the caller
    wrote it. Arithmetic on it gives plain Decimals."""

    source = ""

    def __new__(cls, text):
        number = super().__new__(cls, text)
        number.source = text
        return number


def _parse_float(text):
    """A JSON number with a fraction or an exponent: a float, unless a float would change it into
    something else entirely (infinity, or zero for a number that is not zero)."""
    value = float(text)
    if math.isinf(value) or (value == 0.0 and re.search(r"[1-9]", text.split("e")[0].split("E")[0])):
        return ExactNumber(text)
    return value


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def decode(text):
    """Integers are Python ints, exact at any size; NaN and Infinity, which json accepts by
    default, are refused: they are not JSON."""
    return json.loads(text, parse_float=_parse_float, parse_constant=_refuse_constant)


#: Stands in for a Decimal during encoding, then is replaced by the number's text. json can only
#: write a number it knows (int, float); the nonce keeps a model's own strings from matching.
_PLACEHOLDER = f"modelship-number-{uuid.uuid4().hex}-"
_PLACEHOLDERS = re.compile(f'"{_PLACEHOLDER}(\\d+)"')


class _Encoding:
    """One encoding: numbers json cannot write itself go through placeholders."""

    def __init__(self):
        self.numbers = []

    def default(self, value):
        """Encodes what json cannot by itself but models often return: numpy scalars and arrays,
        and Decimals (written exactly, as numbers)."""
        if isinstance(value, decimal.Decimal):
            if not value.is_finite():
                raise ValueError(f"Out of range float values are not JSON compliant: {value}")
            self.numbers.append(value.source if isinstance(value, ExactNumber) else str(value))
            return f"{_PLACEHOLDER}{len(self.numbers) - 1}"
        if hasattr(value, "tolist"):
            return value.tolist()
        if hasattr(value, "item"):
            return value.item()
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    def encode(self, message):
        # allow_nan=False: NaN and Infinity are not JSON, and the agent must be able to parse
        # every line. ensure_ascii (json's default): the text is ASCII, whatever it carries.
        text = json.dumps(
            message, default=self.default, allow_nan=False, ensure_ascii=True, separators=(",", ":")
        )
        if not self.numbers:
            return text
        # One pass over the text, however many numbers: each placeholder becomes its number.
        return _PLACEHOLDERS.sub(lambda found: self.numbers[int(found.group(1))], text)


def encode(value):
    """One line of JSON text, ASCII only; raises ValueError (NaN, Infinity) or TypeError (an
    object JSON has no form for) for what is not JSON."""
    return _Encoding().encode(value)
