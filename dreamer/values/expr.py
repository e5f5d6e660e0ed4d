"""Arithmetic of the frame number `t`, for keyframe values such as
`1.0025+0.002*sin(1.25*3.14*t/30)`.

Parsed once into Python's AST and walked over an allow-list: numbers, `t`, `pi`, `e`,
the four operations, powers, modulo and a few math functions. Nothing else is ever
evaluated (no names, attributes, calls of anything outside the list, no `eval`), so a
parameters file shared with a video cannot run code.
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Callable

from dreamer.errors import DreamerError

FUNCTIONS: dict[str, Callable[..., float]] = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin,
    "acos": math.acos, "atan": math.atan, "sqrt": math.sqrt, "exp": math.exp,
    "log": math.log, "abs": abs, "floor": math.floor, "ceil": math.ceil,
    "round": round, "min": min, "max": max, "pow": math.pow,
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


class Expression:
    """A checked expression of `t`; call it with a frame number."""

    def __init__(self, text: str):
        self.text = text.strip()
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError:
            raise DreamerError(f"'{self.text}' is not a number or an expression of t "
                               "(e.g. 1.02 or 1+0.01*sin(t/10))") from None
        self._check(tree.body)
        self._tree = tree.body
        self.uses_t = any(isinstance(n, ast.Name) and n.id == "t" for n in ast.walk(tree))

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                self._refuse(f"{node.value!r} is not a number")
        elif isinstance(node, ast.Name):
            if node.id != "t" and node.id not in CONSTANTS:
                self._refuse(f"unknown name '{node.id}'; only t, pi and e")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in FUNCTIONS and not node.keywords:
            least, most = ARITY[node.func.id]
            if not least <= len(node.args) <= most:
                takes = str(least) if least == most else f"{least} or more"
                self._refuse(f"{node.func.id}() takes {takes} argument"
                             f"{'s' if most > 1 else ''}, not {len(node.args)}")
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    self._refuse(f"'{ast.unparse(arg)}' is not allowed")
                self._check(arg)
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            self._refuse(f"unknown function '{name}'; use " + ", ".join(FUNCTIONS))
        else:
            self._refuse(f"'{ast.unparse(node)}' is not allowed; use numbers, t, "
                         "+ - * / ** % and " + ", ".join(FUNCTIONS))

    def _refuse(self, why: str):
        raise DreamerError(f"'{self.text}': {why}")

    def __call__(self, t: float) -> float:
        try:
            value = float(self._eval(self._tree, t))
        except (ArithmeticError, ValueError, TypeError) as e:
            raise DreamerError(f"'{self.text}' cannot be computed at t={t:g} ({e})") from None
        if not math.isfinite(value):
            raise DreamerError(f"'{self.text}' is {value} at t={t:g}")
        return value

    def _eval(self, node: ast.AST, t: float):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return t if node.id == "t" else CONSTANTS[node.id]
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, t), self._eval(node.right, t)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_POWER:
                raise ValueError(f"a power above {MAX_POWER}")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, t))
        return FUNCTIONS[node.func.id](*(self._eval(a, t) for a in node.args))
