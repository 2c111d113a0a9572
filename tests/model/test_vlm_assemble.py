"""MemoryVLM.assemble: [visual; text] per sample with the padding moved as a whole."""

import torch
from torch import nn

from vlmem.data.dataset import IGNORE_INDEX
from vlmem.model.vlm import MemoryVLM


class _LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 2)
        self.embed.weight.data = torch.arange(20.0).view(10, 2)  # row i = [2i, 2i+1]

    def get_input_embeddings(self):
        return self.embed


def _assemble(ids, mask, labels, side):
    holder = type("H", (), {"lm": _LM()})()
    visual = torch.full((2, 2, 2), -1.0)
    return MemoryVLM.assemble(holder, visual, ids, mask, labels, padding_side=side)


def test_right_padding_keeps_text_after_visual():
    ids = torch.tensor([[3, 4, 5], [6, 7, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    labels = torch.tensor([[-100, 4, 5], [-100, 7, -100]])
    emb, m, lab = _assemble(ids, mask, labels, "right")
    assert m.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert emb[1, :2].eq(-1).all() and emb[1, 2].tolist() == [12.0, 13.0] and emb[1, 3].tolist() == [14.0, 15.0]
    assert lab.tolist() == [[IGNORE_INDEX] * 3 + [4, 5], [IGNORE_INDEX] * 3 + [7, IGNORE_INDEX]]


def test_left_padding_moves_pads_before_visual():
    ids = torch.tensor([[3, 4, 5], [0, 6, 7]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    emb, m, lab = _assemble(ids, mask, None, "left")
    assert lab is None
    assert m.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]
    assert emb[1, 1:3].eq(-1).all() and emb[1, 3].tolist() == [12.0, 13.0] and emb[1, 4].tolist() == [14.0, 15.0]
    assert emb[0, 2].tolist() == [6.0, 7.0]
