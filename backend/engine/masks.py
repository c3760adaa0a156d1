"""The one canonical value of "which heads are disabled", made once where a request enters.

A request's ``[[layer, head], ...]`` may repeat heads, come in any order, or be any iterable (a
generator can be read only once). :meth:`HeadMask.of` reads it exactly once, validates every head
against the model's shape and keeps the sorted set; everything inside (store keys, memo keys, the
intervention's tensor, the answer's ``ablate``) is derived from that one value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from headscope.engine.errors import InputError

Head = tuple[int, int]


@dataclass(frozen=True)
class HeadMask:
    """Disabled heads of a ``num_layers x num_heads`` model: sorted, without repeats, all in range."""

    heads: tuple[Head, ...]
    num_layers: int
    num_heads: int

    @classmethod
    def of(cls, ablate: HeadMask | Iterable[Sequence[int]], num_layers: int, num_heads: int) -> HeadMask:
        """Validate `ablate` (read once) into a mask; an unknown head is an InputError naming the ranges."""
        if isinstance(ablate, HeadMask):
            if (ablate.num_layers, ablate.num_heads) != (num_layers, num_heads):
                raise InputError(f"mask for a {ablate.num_layers}x{ablate.num_heads} model given to a "
                                 f"{num_layers}x{num_heads} one")
            return ablate
        heads = set()
        for pair in ablate:
            if len(pair) != 2:
                raise InputError(f"each head is [layer, head]; got {list(pair)}")
            layer, head = int(pair[0]), int(pair[1])
            if not (0 <= layer < num_layers and 0 <= head < num_heads):
                raise InputError(f"unknown head L{layer}H{head}: layers are 0..{num_layers - 1}, "
                                 f"heads 0..{num_heads - 1}")
            heads.add((layer, head))
        return cls(tuple(sorted(heads)), num_layers, num_heads)

    def __bool__(self) -> bool:
        return bool(self.heads)

    def __iter__(self) -> Iterator[Head]:
        """The heads as (layer, head) pairs, so a mask goes wherever a list of pairs is accepted."""
        return iter(self.heads)

    def __len__(self) -> int:
        return len(self.heads)

    def pairs(self) -> list[list[int]]:
        """``[[layer, head], ...]`` sorted: the answer's ``ablate`` and the store key's ``mask``."""
        return [list(h) for h in self.heads]

    def tensor(self) -> torch.Tensor:
        """``[layers, heads]`` bool, True = disabled (the intervention's input)."""
        mask = torch.zeros(self.num_layers, self.num_heads, dtype=torch.bool)
        if self.heads:
            mask[tuple(torch.tensor(self.heads).T)] = True
        return mask
