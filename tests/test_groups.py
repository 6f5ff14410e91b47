"""Groups: generators are consistent with sampled elements; subgroups embed correctly."""

import numpy as np
import pytest
import torch

from softequiv import groups as G

ALL_GROUPS = [
    G.O(3), G.SO(3), G.O(2), G.Scaling(3), G.SE(3), G.SE(2), G.Rot(3), G.Trans(3), G.Lorentz(),
    G.SO13p(), G.Sp(2), G.S(4), G.Z(5), G.SL(3), G.GL(3), G.Trivial(3), G.O2xy(), G.O2yz(),
    G.O2xz(), G.Union(G.SO(3), G.Scaling(3)), G.SO(3) * G.S(4), G.Embed(G.SO(2), 4, [1, 3]),
]


@pytest.mark.parametrize("group", ALL_GROUPS, ids=lambda g: g.name)
def test_sample_shape_dtype_and_determinism(group):
    a = group.sample(4, generator=torch.Generator().manual_seed(1))
    b = group.sample(4, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, group.d, group.d) and a.dtype == torch.float64
    assert torch.equal(a, b)
    assert torch.all(torch.linalg.det(a).abs() > 1e-6)


@pytest.mark.parametrize("group", [G.O(3), G.SO(3), G.O2xy(), G.S(4), G.Z(5), G.Rot(3)],
                         ids=lambda g: g.name)
def test_compact_samples_are_orthogonal(group):
    g = group.sample(8)
    eye = torch.eye(group.d, dtype=torch.float64)
    assert torch.allclose(g @ g.transpose(1, 2), eye.expand_as(g), atol=1e-12)


def test_so3_samples_have_det_one_and_o3_has_both_signs():
    assert torch.allclose(torch.linalg.det(G.SO(3).sample(16)), torch.ones(16, dtype=torch.float64))
    dets = torch.linalg.det(G.O(3).sample(64))
    assert (dets > 0).any() and (dets < 0).any()


def test_lorentz_preserves_metric_and_sp_preserves_J():
    eta = torch.diag(torch.tensor([-1.0, 1, 1, 1], dtype=torch.float64))
    g = G.Lorentz().sample(8)
    assert torch.allclose(g.transpose(1, 2) @ eta @ g, eta.expand_as(g), atol=1e-9)
    sp = G.Sp(2)
    J = torch.from_numpy(sp.J)
    g = sp.sample(8)
    assert torch.allclose(g.transpose(1, 2) @ J @ g, J.expand_as(g), atol=1e-9)


def test_se3_samples_are_affine():
    g = G.SE(3).sample(8)
    assert torch.allclose(g[:, 3], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(8, 4))
    R = g[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(8, 3, 3),
                          atol=1e-12)


def test_plane_groups_fix_their_axis():
    for group, fixed in ((G.O2xy(), 2), (G.O2yz(), 0), (G.O2xz(), 1)):
        e = torch.zeros(3, dtype=torch.float64)
        e[fixed] = 1.0
        assert torch.allclose(group.sample(8) @ e, e.expand(8, 3), atol=1e-12)


def test_key_depends_on_generators_not_name():
    a = G.Embed(G.O(2), 3, [0, 1], name="O(2)")
    b = G.Embed(G.O(2), 3, [1, 2], name="O(2)")
    assert a.name == b.name and a.key != b.key
    assert G.O(3).key == G.O(3).key


def test_orthogonality_flag():
    assert G.O(3).is_orthogonal and G.O2xy().is_orthogonal and G.S(4).is_orthogonal
    assert not G.SE(3).is_orthogonal and not G.Scaling(3).is_orthogonal
    assert not G.Lorentz().is_orthogonal


def test_conformal_flag():
    """Rotations, reflections and scalings keep angles; affine, special linear and Lorentz
    groups do not."""
    assert G.O(3).is_conformal and G.Scaling(3).is_conformal
    assert G.Union(G.SO(3), G.Scaling(3)).is_conformal
    assert not G.SE(3).is_conformal and not G.SL(3).is_conformal
    assert not G.Lorentz().is_conformal


def test_rigid_affine_flag():
    """Rigid motions on homogeneous coordinates: [[R, t], [0, 1]] with R orthogonal."""
    assert G.SE(3).is_rigid_affine and G.Rot(3).is_rigid_affine and G.Trans(3).is_rigid_affine
    assert G.Trans(3, [0, 1]).is_rigid_affine
    assert not G.SO(3).is_rigid_affine and not G.Scaling(3).is_rigid_affine
    assert not G.GL(3).is_rigid_affine


def test_product_is_block_diagonal():
    g = (G.SO(3) * G.S(4)).sample(5).numpy()
    assert np.allclose(g[:, :3, 3:], 0) and np.allclose(g[:, 3:, :3], 0)


def test_embed_rejects_bad_axes():
    with pytest.raises(ValueError, match="axes"):
        G.Embed(G.O(2), 3, [0, 3])
    with pytest.raises(ValueError, match="acts on"):
        G.Embed(G.O(2), 3, [0])


def test_finite_groups_contain_their_subgroups_and_what_they_generate():
    from softequiv.groups import C2, C4, D2, D4, FlipX, FlipY, Union

    assert D4().contains(C4()) and D4().contains(FlipX()) and D2().contains(C2())
    assert not FlipX().contains(C2()) and not C4().contains(FlipY())
    generated = Union(FlipX(), C2())
    assert generated.contains(D2()) and D2().contains(generated)
    assert Union(C4(), FlipY()).contains(D4())
