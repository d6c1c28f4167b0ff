"""Matching and distinctive losses against a direct hand computation on tiny batches."""
import math

import pytest
import torch
import torch.nn.functional as F

from s2i_lib.sen import distinctive_loss, make_classifier, matching_loss


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def unit(rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=1)


def hand_matching_loss(v, a, classes, gamma):
    """Loop-by-loop: S_ij = gamma cos(v_i, a_j), same-class off-diagonal entries dropped,
    -log softmax of the diagonal, averaged, in both directions."""
    n = len(v)
    s = [[gamma * float(v[i] @ a[j]) for j in range(n)] for i in range(n)]
    keep = [[i == j or classes is None or classes[i] != classes[j] for j in range(n)] for i in range(n)]
    rows = 0.0
    cols = 0.0
    for i in range(n):
        rows += -s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n) if keep[i][j]))
        cols += -s[i][i] + math.log(sum(math.exp(s[j][i]) for j in range(n) if keep[j][i]))
    return rows / n + cols / n


V = [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.3, 0.9], [0.5, -0.5, 0.7]]
A = [[0.9, 0.1, 0.0], [0.1, 1.0, 0.2], [0.3, 0.0, 1.0], [0.2, -0.4, 0.6]]


@pytest.mark.parametrize("classes", [[0, 1, 2, 3], [0, 0, 1, 2], [5, 7, 5, 7], None])
@pytest.mark.parametrize("gamma", [1.0, 10.0])
def test_matching_loss_equals_the_hand_computation(classes, gamma):
    v, a = unit(V), unit(A)
    ids = None if classes is None else torch.tensor(classes)
    got = matching_loss(v, a, ids, gamma=gamma)
    assert got.item() == pytest.approx(hand_matching_loss(v, a, classes, gamma), rel=1e-9)


def test_matching_loss_of_a_two_pair_batch_by_closed_form():
    # v = a = e1, e2: S = gamma * I, each CE = log(1 + exp(-gamma)), two directions
    e = torch.eye(2, dtype=torch.float64)
    assert matching_loss(e, e, torch.tensor([0, 1]), gamma=3.0).item() == pytest.approx(
        2 * math.log(1 + math.exp(-3.0)))
    # same class: nothing is left to compare against, the loss is 0
    assert matching_loss(e, e, torch.tensor([4, 4]), gamma=3.0).item() == pytest.approx(0.0)


def test_a_same_class_negative_does_not_change_the_loss():
    v, a = unit(V), unit(A)
    classes = torch.tensor([0, 0, 1, 2])           # pairs 0 and 1 share a class
    base = matching_loss(v, a, classes)
    moved = a.clone()
    moved[1] = unit([[-0.3, 0.2, 0.9]])[0]
    # a_1 moved: it is the *positive* of pair 1, so the loss changes...
    assert matching_loss(v, moved, classes).item() != pytest.approx(base.item())
    # ...but as a negative of pair 0 it is masked: S[0, 1] and S[1, 0] do not enter
    s = 10.0 * v @ a.t()
    s_other = s.clone()
    s_other[0, 1] = 99.0
    s_other[1, 0] = -99.0
    # the same loss from a similarity matrix whose masked entries are anything
    t = torch.arange(4)
    mask = (classes[:, None] == classes[None, :]) & ~torch.eye(4, dtype=torch.bool)
    for m in (s, s_other):
        m = m.masked_fill(mask, float("-inf"))
        assert (F.cross_entropy(m, t) + F.cross_entropy(m.t(), t)).item() == pytest.approx(base.item())


def test_moving_a_same_class_negative_leaves_the_loss_unchanged():
    # pairs 0 and 1 (class 0) live in span(e1, e2, e3), pair 2 (class 1) on e4. Rotating pair 1's
    # image AND speech together keeps its own similarity and its zero similarity to pair 2, and
    # changes only S[0, 1] and S[1, 0]: masked entries.
    pair0 = unit([[1.0, 0.2, 0.0, 0.0], [0.9, 0.0, 0.3, 0.0]])
    v1, a1 = unit([[0.2, 1.0, 0.1, 0.0]])[0], unit([[0.0, 0.8, 0.5, 0.0]])[0]
    e4 = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    c, s = math.cos(1.1), math.sin(1.1)
    rot = torch.eye(4, dtype=torch.float64)
    rot[:3, :3] = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)

    def loss(v1_, a1_, classes):
        v = torch.stack([pair0[0], v1_, e4])
        a = torch.stack([pair0[1], a1_, e4])
        return matching_loss(v, a, torch.tensor(classes)).item()

    before = loss(v1, a1, [0, 0, 1])
    after = loss(rot @ v1, rot @ a1, [0, 0, 1])
    assert after == pytest.approx(before, rel=1e-12)
    # without the class mask the same move does change the loss (so this test can fail)
    assert loss(rot @ v1, rot @ a1, [0, 1, 2]) != pytest.approx(loss(v1, a1, [0, 1, 2]), rel=1e-6)


def test_matching_loss_is_differentiable_and_checks_shapes():
    v = unit(V).requires_grad_(True)
    a = unit(A).requires_grad_(True)
    matching_loss(v, a, torch.tensor([0, 0, 1, 2])).backward()
    assert v.grad.abs().sum() > 0 and a.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="must both be"):
        matching_loss(unit(V), unit(A)[:3], None)


def test_distinctive_loss_equals_the_hand_computation():
    torch.manual_seed(0)
    clf = make_classifier(3, 4).double()
    v, a = unit(V), unit(A)
    labels = torch.tensor([0, 3, 1, 3])
    w, b = clf.weight.detach(), clf.bias.detach()

    def ce(x):
        total = 0.0
        for i in range(len(x)):
            logits = [float(w[c] @ x[i] + b[c]) for c in range(4)]
            total += -logits[labels[i]] + math.log(sum(math.exp(z) for z in logits))
        return total / len(x)

    got = distinctive_loss(clf, v, a, labels)
    assert got.item() == pytest.approx(ce(v) + ce(a), rel=1e-9)


def test_classifier_is_shared_and_xavier_initialised():
    torch.manual_seed(0)
    clf = make_classifier(1024, 150)
    bound = math.sqrt(6 / (1024 + 150))
    assert clf.weight.abs().max() <= bound
    assert clf.weight.abs().max() > 0.9 * bound    # uniform over the whole Xavier range
    v = torch.randn(4, 1024, requires_grad=True)
    a = torch.randn(4, 1024, requires_grad=True)
    distinctive_loss(clf, v, a, torch.tensor([0, 1, 2, 3])).backward()
    assert v.grad is not None and a.grad is not None and clf.weight.grad is not None
