"""Arithmetic of the frame number `t`, for keyframe values such as
`1.0025+0.002*sin(1.25*3.14*t/30)`.

Parsed once into Python's AST and walked over an allow-list: numbers, `t`, `pi`, `e`,
the four operations, powers, modulo and a few math functions. Nothing else is ever
evaluated (no names, attributes, calls of anything outside the list, no `eval`), so a
parameters file shared with a video cannot run code.

Everything is bounded, so that no text can hang or crash the evaluation: the text's length
and nesting before it is parsed, the tree's depth after, and every value while it is
computed (each number, each operation's and function's result): a finite real within
+-MAX_VALUE, far beyond any setting's range, so that no chain of powers or products can
grow a huge number (Python's integers have no limit: `(((10**64)**64)**64)**64` would
compute for hours).
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Callable

from dreamer.errors import DreamerError

MAX_ROUND = 30  # round(x, n): |n| at most this (round(5, -10**15) computes 10**10**15)


def _round(x, digits=None):
    if digits is None:
        return round(x)
    if isinstance(digits, int) and abs(digits) > MAX_ROUND:
        raise ValueError(f"round()'s digits must be within -{MAX_ROUND} to {MAX_ROUND}")
    return round(x, digits)


FUNCTIONS: dict[str, Callable[..., float]] = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin,
    "acos": math.acos, "atan": math.atan, "sqrt": math.sqrt, "exp": math.exp,
    "log": math.log, "abs": abs, "floor": math.floor, "ceil": math.ceil,
    "round": _round, "min": min, "max": max, "pow": math.pow,
}
# How many arguments each takes (least, most)
ARITY = {name: (1, 1) for name in FUNCTIONS}
ARITY.update(log=(1, 2), round=(1, 2), pow=(2, 2), min=(2, 99), max=(2, 99))
CONSTANTS = {"pi": math.pi, "e": math.e}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod,
           ast.FloorDiv: operator.floordiv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_POWER = 64  # 9**9**9 would hang the parser's caller; no schedule needs more
# Every value, from each number written to each result, stays within +-MAX_VALUE: far
# beyond any setting's range (config.py's largest bound is 100,000), and small enough that
# a power of it (at most MAX_POWER) is computed at once, however many powers are nested
MAX_VALUE = 1e15
MAX_LENGTH = 1000  # characters of one expression: a key's value, not a program
MAX_DEPTH = 100    # nesting, of parentheses before parsing and of the tree after


def shorten(text, most: int = 60) -> str:
    """A text as a message shows it: its first `most` characters and '...' when longer,
    so that an error never echoes a 25 KB expression back."""
    text = str(text)
    return text if len(text) <= most + 3 else text[:most] + "..."


def shown(value) -> str:
    """A number as a message shows it, huge whole numbers included."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        try:
            return f"{float(value):.6g}"
        except OverflowError:  # (str() refuses above 4300 digits: the size, then)
            return f"{'-' if value < 0 else ''}about 1e{int(value.bit_length() * 0.30103)}"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class _Beyond(ArithmeticError):
    """A value that is not a finite real within +-MAX_VALUE."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


def _bounded(value):
    """The value, if a finite real within +-MAX_VALUE (NaN fails every comparison)."""
    if type(value) in (float, int) and -MAX_VALUE <= value <= MAX_VALUE:
        return value
    raise _Beyond(value)  # (or a complex power, (-8)**(1/3))


def _nesting(text: str) -> int:
    """How deep the brackets of a text nest."""
    depth = most = 0
    for c in text:
        if c in "([{":
            depth += 1
            most = max(most, depth)
        elif c in ")]}":
            depth -= 1
    return most


class Expression:
    """A checked expression of `t`; call it with a frame number."""

    def __init__(self, text: str):
        self.text = str(text).strip()
        if len(self.text) > MAX_LENGTH:
            self._refuse(f"{len(self.text):,} characters long; an expression may have at "
                         f"most {MAX_LENGTH:,}")
        if _nesting(self.text) > MAX_DEPTH:
            self._refuse(f"its parentheses nest more than {MAX_DEPTH} deep")
        try:
            tree = ast.parse(self.text, mode="eval")
        except (SyntaxError, ValueError):  # (ValueError: a NUL character)
            raise DreamerError(f"'{shorten(self.text)}' is not a number or an expression of "
                               "t (e.g. 1.02 or 1+0.01*sin(t/10))") from None
        except (RecursionError, MemoryError):
            self._refuse("too deeply nested to read")
        self.uses_t = False
        self._check(tree.body)
        self._tree = tree.body
        self._value = None  # of one without t, once computed

    def _check(self, node: ast.AST, depth: int = 1) -> None:
        """Refuses anything outside the allow-list, and a tree deeper than MAX_DEPTH
        (`1+1+...+1` nests without parentheses) before it recurses any deeper."""
        if depth > MAX_DEPTH:
            self._refuse(f"its operations nest more than {MAX_DEPTH} deep")
        depth += 1
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                self._refuse(f"{shorten(repr(node.value))} is not a number")
        elif isinstance(node, ast.Name):
            if node.id != "t" and node.id not in CONSTANTS:
                self._refuse(f"unknown name '{shorten(node.id)}'; only t, pi and e")
            self.uses_t = self.uses_t or node.id == "t"
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left, depth)
            self._check(node.right, depth)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand, depth)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in FUNCTIONS and not node.keywords:
            least, most = ARITY[node.func.id]
            if not least <= len(node.args) <= most:
                takes = str(least) if least == most else f"{least} or more"
                self._refuse(f"{node.func.id}() takes {takes} argument"
                             f"{'s' if most > 1 else ''}, not {len(node.args)}")
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    self._refuse(f"'{self._source(arg)}' is not allowed")
                self._check(arg, depth)
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else self._source(node.func)
            self._refuse(f"unknown function '{shorten(name)}'; use " + ", ".join(FUNCTIONS))
        else:
            self._refuse(f"'{self._source(node)}' is not allowed; use numbers, t, "
                         "+ - * / ** % and " + ", ".join(FUNCTIONS))

    def _source(self, node: ast.AST) -> str:
        """A part of the text as written (cut short), without unparsing: that recurses."""
        return shorten(ast.get_source_segment(self.text, node) or type(node).__name__)

    def _refuse(self, why: str):
        raise DreamerError(f"'{shorten(self.text)}': {why}")

    def __call__(self, t: float) -> float:
        if self._value is not None:
            return self._value
        try:
            value = float(self._eval(self._tree, t))
        except _Beyond as e:
            what = e.value
            if isinstance(what, float) and not math.isfinite(what):
                raise DreamerError(f"'{shorten(self.text)}' is {what} at t={t:g}") from None
            if not isinstance(what, (int, float)):
                raise DreamerError(f"'{shorten(self.text)}' is not a real number at "
                                   f"t={t:g}") from None
            raise DreamerError(f"'{shorten(self.text)}' reaches {shown(what)} at t={t:g}, "
                               f"beyond any setting's range (every value stays within "
                               f"-{MAX_VALUE:g} to {MAX_VALUE:g})") from None
        except (ArithmeticError, ValueError, TypeError) as e:
            raise DreamerError(f"'{shorten(self.text)}' cannot be computed at t={t:g} "
                               f"({shorten(e, 100)})") from None
        if not self.uses_t:
            self._value = value
        return value

    def _eval(self, node: ast.AST, t: float):
        if isinstance(node, ast.Constant):
            return _bounded(node.value)
        if isinstance(node, ast.Name):
            return _bounded(t if node.id == "t" else CONSTANTS[node.id])
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, t), self._eval(node.right, t)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_POWER:
                raise ValueError(f"a power above {MAX_POWER}")
            return _bounded(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp):
            return _bounded(_UNARY[type(node.op)](self._eval(node.operand, t)))
        return _bounded(FUNCTIONS[node.func.id](*(self._eval(a, t) for a in node.args)))
