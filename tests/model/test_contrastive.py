import math

import pytest
import torch
import torch.nn.functional as F

from vlmem.errors import ConfigError
from vlmem.model.contrastive import FeatureCompression, ITCHead, ITMHead, bitgen_loss

LO, HI = torch.tensor(0.01).item(), 1.0  # float32 bounds


def _feats(b, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


# --------------------------------------------------------------------- FeatureCompression


def test_feature_compression_shapes_and_layers():
    m = FeatureCompression()
    kinds = [type(x).__name__ for x in m.net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "LayerNorm"]
    assert (m.net[0].in_features, m.net[0].out_features, m.net[3].out_features) == (768, 384, 128)
    y = m(torch.randn(2, 5, 768))
    assert y.shape == (2, 5, 128)
    m2 = FeatureCompression(16, 8, 4, dropout=0.0).eval()
    out = m2(torch.randn(3, 16))
    assert torch.allclose(out.mean(-1), torch.zeros(3), atol=1e-5)
    with pytest.raises(ConfigError):
        FeatureCompression(dropout=1.0)


# --------------------------------------------------------------------------------- ITC


def test_itc_shapes_and_initial_temperature():
    head = ITCHead(dim=8, queue_size=16)
    assert head.temperature.item() == pytest.approx(0.5, abs=1e-6)
    img, txt = _feats(4, 8)
    out = head(img, txt)
    assert out["loss"].dim() == 0
    assert out["logits_i2t"].shape == (4, 4)  # queue empty before the first batch
    assert int(head.queue_len) == 4
    out = head(img, txt)
    assert out["logits_i2t"].shape == (4, 8) and out["logits_t2i"].shape == (4, 8)


def test_itc_loss_matches_hand_computed_3x3():
    head = ITCHead(dim=3, queue_size=0, temperature=0.5)
    img = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 2.0]])
    txt = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 3.0, 4.0]])
    out = head(img, txt)
    # by hand: normalise rows, cosine matrix, / 0.5, CE rows + CE columns
    ni = [[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]]
    s = 1 / math.sqrt(2)
    nt = [[0, 1, 0], [s, s, 0], [0, 0.6, 0.8]]
    sim = [[sum(a * c for a, c in zip(r, t, strict=True)) / 0.5 for t in nt] for r in ni]

    def ce(rows):
        return sum(math.log(sum(math.exp(x) for x in r)) - r[k] for k, r in enumerate(rows)) / 3

    cols = [[sim[i][j] for i in range(3)] for j in range(3)]
    expected = 0.5 * (ce(sim) + ce(cols))
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(out["logits_i2t"], torch.tensor(sim), atol=1e-6)
    assert torch.allclose(out["logits_t2i"], torch.tensor(sim).t(), atol=1e-6)
    assert int(head.queue_len) == 0 and head.image_queue.numel() == 0


def test_queue_enqueue_wraparound_and_large_batch():
    head = ITCHead(dim=2, queue_size=5)
    rows = F.normalize(torch.tensor([[float(i + 1), 1.0] for i in range(12)]), dim=-1)
    head.enqueue(rows[:3], -rows[:3])
    assert int(head.queue_ptr) == 3 and int(head.queue_len) == 3
    assert torch.allclose(head.image_queue[:3], rows[:3])
    assert torch.allclose(head.text_queue[:3], -rows[:3])
    head.enqueue(rows[3:7], -rows[3:7])  # 4 rows: slots 3, 4, then wrap to 0, 1
    assert int(head.queue_ptr) == 2 and int(head.queue_len) == 5
    assert torch.allclose(head.image_queue, rows[[5, 6, 2, 3, 4]])
    assert torch.allclose(head.text_queue, -rows[[5, 6, 2, 3, 4]])
    head.enqueue(rows[:12], -rows[:12])  # batch larger than the queue keeps the last 5
    assert int(head.queue_ptr) == 0 and int(head.queue_len) == 5
    assert torch.allclose(head.image_queue, rows[7:12])
    # enqueue normalises and detaches
    x = torch.tensor([[3.0, 4.0]], requires_grad=True)
    head.enqueue(x, x)
    assert torch.allclose(head.image_queue[0], torch.tensor([0.6, 0.8]))
    assert not head.image_queue.requires_grad
    head.reset_queue()
    assert int(head.queue_len) == 0


def test_queue_used_as_negatives_and_update_flag():
    head = ITCHead(dim=4, queue_size=8, temperature=0.5)
    img, txt = _feats(3, 4, seed=1)
    old_img, old_txt = _feats(2, 4, seed=2)
    head.enqueue(old_img, old_txt)
    out = head(img, txt, update_queue=False)
    assert int(head.queue_len) == 2  # not updated
    ni, nt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    exp_i2t = ni @ torch.cat([nt, F.normalize(old_txt, dim=-1)]).t() / 0.5
    exp_t2i = nt @ torch.cat([ni, F.normalize(old_img, dim=-1)]).t() / 0.5
    assert torch.allclose(out["logits_i2t"], exp_i2t, atol=1e-6)
    assert torch.allclose(out["logits_t2i"], exp_t2i, atol=1e-6)
    tgt = torch.arange(3)
    exp = 0.5 * (F.cross_entropy(exp_i2t, tgt) + F.cross_entropy(exp_t2i, tgt))
    assert out["loss"].item() == pytest.approx(exp.item(), rel=1e-5)
    head.eval()
    head(img, txt)
    assert int(head.queue_len) == 2  # eval mode: no update by default
    head.train()
    head(img, txt)
    assert int(head.queue_len) == 5


def test_retrieval_accuracy_aligned_and_random():
    head = ITCHead(dim=16, queue_size=0)
    eye = torch.eye(16)[:10] * 3.0
    out = head(eye, eye.clone())
    assert out["i2t_acc"].item() == 1.0 and out["t2i_acc"].item() == 1.0
    # random pairs: chance = 1/B
    b, accs = 32, []
    for seed in range(20):
        img, txt = _feats(b, 16, seed=seed)
        o = head(img, txt)
        accs += [o["i2t_acc"].item(), o["t2i_acc"].item()]
    mean = sum(accs) / len(accs)
    assert mean < 0.12  # chance is 1/32 ~ 0.031


def test_itc_gradients_and_temperature_range():
    head = ITCHead(dim=8, queue_size=4)
    img = torch.randn(5, 8, requires_grad=True)
    txt = torch.randn(5, 8, requires_grad=True)
    head(img, txt)
    out = head(img, txt)
    out["loss"].backward()
    assert head.temperature_raw.grad is not None and head.temperature_raw.grad.abs() > 0
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0
    # push hard in both directions: temperature stays inside [0.01, 1.0]
    for target in (1e6, -1e6):
        with torch.no_grad():
            head.temperature_raw.fill_(target)
        t = head.temperature.item()
        assert LO <= t <= HI
    opt = torch.optim.SGD(head.parameters(), lr=50.0)
    for _ in range(20):
        opt.zero_grad()
        head(torch.randn(5, 8), torch.randn(5, 8))["loss"].backward()
        opt.step()
        assert LO <= head.temperature.item() <= HI
    fixed = ITCHead(dim=8, learn_temperature=False)
    assert list(fixed.parameters()) == []
    assert fixed.temperature.item() == pytest.approx(0.5, abs=1e-6)


def test_itc_bad_inputs():
    head = ITCHead(dim=4)
    with pytest.raises(ValueError):
        head(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError):
        head(torch.randn(3, 5), torch.randn(3, 5))
    with pytest.raises(ConfigError):
        ITCHead(temperature=2.0)


# --------------------------------------------------------------------------------- ITM


def test_itm_shapes_and_determinism():
    head = ITMHead(dim=8, hidden=16)
    img, txt = _feats(6, 8)
    out = head(img, txt, generator=torch.Generator().manual_seed(0))
    assert out["logits"].shape == (18, 2) and out["labels"].tolist() == [1] * 6 + [0] * 12
    assert out["loss"].dim() == 0 and 0.0 <= out["acc"].item() <= 1.0
    again = head(img, txt, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["neg_txt_idx"], again["neg_txt_idx"])
    assert torch.equal(out["neg_img_idx"], again["neg_img_idx"])
    assert out["loss"].item() == again["loss"].item()


def test_itm_never_picks_true_pair():
    head = ITMHead(dim=4, hidden=8)
    g = torch.Generator().manual_seed(0)
    b = 4
    img, txt = _feats(b, 4, seed=3)
    sim = torch.full((b, b), -2.0)
    sim.fill_diagonal_(20.0)  # true pair overwhelmingly similar, still never sampled
    for _ in range(300):
        out = head(img, txt, sim=sim, generator=g)
        assert not (out["neg_txt_idx"] == torch.arange(b)).any()
        assert not (out["neg_img_idx"] == torch.arange(b)).any()


def test_itm_prefers_most_similar_negative():
    head = ITMHead(dim=4, hidden=8)
    g = torch.Generator().manual_seed(1)
    b = 4
    img, txt = _feats(b, 4, seed=4)
    sim = torch.zeros(b, b)
    hard = torch.tensor([2, 3, 0, 1])  # most similar wrong text for each image
    sim[torch.arange(b), hard] = 3.0
    sim.fill_diagonal_(10.0)
    counts = torch.zeros(b, b)
    for _ in range(300):
        idx = head(img, txt, sim=sim, generator=g)["neg_txt_idx"]
        counts[torch.arange(b), idx] += 1
    assert torch.equal(counts.argmax(1), hard)
    # p(hard) = e^3 / (e^3 + 2) ~ 0.91
    assert (counts[torch.arange(b), hard] / 300 > 0.8).all()
    # text -> image uses sim.T by default (no image queue)
    cnt_img = torch.zeros(b, b)
    for _ in range(200):
        idx = head(img, txt, sim=sim, generator=g)["neg_img_idx"]
        cnt_img[torch.arange(b), idx] += 1
    hard_t2i = sim.clone().fill_diagonal_(-1e9).t().argmax(1)
    assert torch.equal(cnt_img.argmax(1), hard_t2i)


def test_itm_queue_negatives():
    head = ITMHead(dim=4, hidden=8)
    g = torch.Generator().manual_seed(2)
    b, q = 3, 5
    img, txt = _feats(b, 4, seed=5)
    q_img, q_txt = _feats(q, 4, seed=6)
    # similarity peaked on queue column 3 (index b + 3 in the pool)
    sim = torch.zeros(b, b + q)
    sim.fill_diagonal_(10.0)
    sim[:, b + 3] = 8.0
    out = head(img, txt, sim=sim, sim_t2i=sim.clone(), generator=g, queue_img=q_img, queue_txt=q_txt)
    assert out["logits"].shape == (3 * b, 2)
    hits = 0
    for _ in range(100):
        o = head(img, txt, sim=sim, sim_t2i=sim, generator=g, queue_img=q_img, queue_txt=q_txt)
        hits += (o["neg_txt_idx"] == b + 3).sum().item()
        assert (o["neg_txt_idx"] < b + q).all()
    assert hits / (100 * b) > 0.9
    # without sim: cosine on features, pool includes queue
    o = head(img, txt, generator=g, queue_img=q_img, queue_txt=q_txt)
    assert (o["neg_txt_idx"] < b + q).all() and (o["neg_img_idx"] < b + q).all()
    # a square sim with a text queue is ambiguous -> error
    with pytest.raises(ValueError):
        head(img, txt, sim=torch.zeros(b, b), queue_txt=q_txt)
    # one sample, no queue: no negative available
    with pytest.raises(ValueError):
        head(img[:1], txt[:1])
    # one sample plus a queue works
    o = head(img[:1], txt[:1], generator=g, queue_img=q_img, queue_txt=q_txt)
    assert (o["neg_txt_idx"] >= 1).all() and (o["neg_img_idx"] >= 1).all()


def test_itm_with_itc_logits_and_gradients_reach_all_parameters():
    comp = FeatureCompression(32, 16, 8, dropout=0.1)
    itc = ITCHead(dim=8, queue_size=16)
    itm = ITMHead(dim=8, hidden=16)
    g = torch.Generator().manual_seed(0)
    for step in range(2):  # second step has a non-empty queue
        x_img, x_txt = _feats(6, 32, seed=10 + step)
        img, txt = comp(x_img), comp(x_txt)
        q_img, q_txt = itc.queued()
        q_img, q_txt = q_img.clone(), q_txt.clone()
        c = itc(img, txt)
        m = itm(
            img,
            txt,
            sim=c["logits_i2t"],
            sim_t2i=c["logits_t2i"],
            generator=g,
            queue_img=q_img,
            queue_txt=q_txt,
        )
        total = bitgen_loss({"itc": c["loss"], "itm": m["loss"]})
    for mod in (comp, itc, itm):
        for p in mod.parameters():
            p.grad = None
    total.backward()
    for name, p in [*comp.named_parameters(), *itc.named_parameters(), *itm.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_itm_learns_to_separate():
    torch.manual_seed(0)
    head = ITMHead(dim=8, hidden=32)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(16, 8, generator=g)
    for _ in range(150):
        out = head(base, base + 0.05 * torch.randn(16, 8, generator=g), generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["acc"].item() > 0.9


# --------------------------------------------------------------------------------- loss


def test_bitgen_loss_weighting():
    t = {
        "itc": torch.tensor(2.0),
        "itm": torch.tensor(4.0),
        "memory_kl": torch.tensor(10.0),
        "text": torch.tensor(float("nan")),
    }
    assert bitgen_loss(t).item() == pytest.approx(2.0 + 0.5 * 4.0 + 0.1 * 10.0)  # text weight 0
    assert bitgen_loss(t, weights=(1, 1, 1, 0)).item() == pytest.approx(16.0)
    t2 = {"itc": 1.0, "text": torch.tensor(3.0)}
    assert bitgen_loss(t2, weights={"text": 2.0}).item() == pytest.approx(7.0)
    assert bitgen_loss({"itm": torch.tensor(3.0)}).item() == pytest.approx(1.5)
    assert bitgen_loss({}).item() == 0.0
    with pytest.raises(ValueError):
        bitgen_loss({"itx": torch.tensor(1.0)})
    with pytest.raises(ValueError):
        bitgen_loss(t, weights=(1.0, 0.5))
    x = torch.tensor(1.0, requires_grad=True)
    bitgen_loss({"itc": x * 3, "itm": x}).backward()
    assert x.grad.item() == pytest.approx(3.5)
