"""A document's neighbours laid out for an SVG drawing: the document in the middle, neighbours on rings.

Pure: values in, coordinates out. Neighbours one hop away sit on the inner ring, farther ones on
outer rings, each ring's nodes evenly spread and sorted by weight so the drawing is stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from handlers.api import Neighbour

WIDTH = 640
HEIGHT = 440
_RING_GAP = 120
_FIRST_RING = 130


@dataclass(frozen=True, slots=True)
class Node:
    key: str
    label: str
    x: float
    y: float
    status: str
    centre: bool = False


@dataclass(frozen=True, slots=True)
class Line:
    relation: str
    weight: float
    ambiguous: bool
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class GraphLayout:
    width: int
    height: int
    nodes: tuple[Node, ...]
    lines: tuple[Line, ...]


def layout(key: str, status: str, neighbours: Sequence[Neighbour]) -> GraphLayout:
    """Place the document and its neighbours; each neighbour is joined to the node it was reached from."""
    centre_x, centre_y = WIDTH / 2, HEIGHT / 2
    nodes = {key: Node(key, _label(key), centre_x, centre_y, status, centre=True)}
    rings: dict[int, list[Neighbour]] = {}
    for neighbour in neighbours:
        rings.setdefault(neighbour.hops, []).append(neighbour)
    for hops, members in sorted(rings.items()):
        radius = min(_FIRST_RING + (hops - 1) * _RING_GAP, HEIGHT / 2 - 30)
        for index, neighbour in enumerate(sorted(members, key=lambda member: (-member.weight, member.key))):
            angle = 2 * math.pi * index / len(members) - math.pi / 2 + (hops - 1) * 0.4
            x = centre_x + radius * 1.3 * math.cos(angle)
            y = centre_y + radius * math.sin(angle)
            nodes.setdefault(neighbour.key, Node(neighbour.key, _label(neighbour.key), x, y, neighbour.status))
    lines = []
    for neighbour in neighbours:
        source = nodes[neighbour.via[-1]] if neighbour.via and neighbour.via[-1] in nodes else nodes[key]
        target = nodes[neighbour.key]
        lines.append(
            Line(
                neighbour.relations[-1],
                neighbour.weight,
                neighbour.ambiguous,
                source.x,
                source.y,
                target.x,
                target.y,
            )
        )
    return GraphLayout(WIDTH, HEIGHT, tuple(nodes.values()), tuple(lines))


def _label(key: str) -> str:
    name = key.rpartition("/")[2] or key
    return name if len(name) <= 28 else name[:27] + "…"
