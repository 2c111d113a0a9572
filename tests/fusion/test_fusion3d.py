import pytest
import torch

from vlmem.errors import ConfigError, UsageError
from vlmem.fusion import CrossAttentionFusion, Fusion3D, PositionInjection, ViewpointAlignment

B, N, D, P, G, C = 3, 9, 16, 5, 12, 7


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        visual=torch.randn(B, N, D, generator=g),
        coords=torch.randn(B, N, 3, generator=g) * 4.0,
        coords_valid=torch.rand(B, N, generator=g) > 0.2,
        geo_tokens=torch.randn(B, P, G, generator=g),
        cam=torch.randn(B, C, generator=g),
    )


def test_output_shapes_each_module():
    x = _inputs()
    inj = PositionInjection(D)
    assert inj(x["visual"], x["coords"], x["coords_valid"]).shape == (B, N, D)
    align = ViewpointAlignment(G, C, D)
    kv = align(x["geo_tokens"], x["cam"])
    assert kv.shape == (B, 1 + P, D)
    xattn = CrossAttentionFusion(D, D, num_heads=4)
    assert xattn(x["visual"], kv).shape == (B, N, D)
    assert Fusion3D(D, G, C, num_heads=4)(**x).shape == (B, N, D)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    fusion = Fusion3D(D, G, C, num_heads=4)
    out = fusion(**_inputs())
    out.square().sum().backward()
    missing = [n for n, p in fusion.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_all_stages_off_is_identity():
    fusion = Fusion3D(D, G, C, position_injection=False, viewpoint_alignment=False, cross_attention=False)
    assert fusion.is_identity and not list(fusion.parameters())
    x = _inputs()
    assert fusion(x["visual"]) is x["visual"]


def test_fresh_block_is_near_identity():
    torch.manual_seed(0)
    x = _inputs()
    out = Fusion3D(D, G, C, num_heads=4)(**x)
    assert (out - x["visual"]).abs().max() < 0.2 * x["visual"].abs().max()
    scalar = Fusion3D(D, G, C, num_heads=4, coordinate_gate="scalar", cross_attention=False, viewpoint_alignment=False)
    assert torch.equal(scalar(**x), x["visual"])


def test_vlm3r_path_depends_on_camera_and_patch_tokens():
    torch.manual_seed(0)
    fusion = Fusion3D(D, G, num_heads=4, position_injection=False, viewpoint_alignment=False)
    x = _inputs()
    cam = torch.randn(B, 1, G)
    base = fusion(x["visual"], geo_tokens=x["geo_tokens"], cam=cam)
    # (new random values: shifting/scaling a token would be undone by the pre-LayerNorm)
    other_cam = fusion(x["visual"], geo_tokens=x["geo_tokens"], cam=torch.randn(B, 1, G))
    other_patch = fusion(x["visual"], geo_tokens=torch.randn(B, P, G), cam=cam)
    assert not torch.allclose(base, other_cam)
    assert not torch.allclose(base, other_patch)
    # Structurally VLM-3R's block: KV = [camera token; patch tokens] through one cross-attention.
    kv = torch.cat([cam, x["geo_tokens"]], dim=1)
    assert torch.allclose(base, fusion.cross(x["visual"], kv))


def test_invalid_coordinates_do_not_change_injection():
    torch.manual_seed(0)
    inj = PositionInjection(D)
    x = _inputs()
    valid = x["coords_valid"].clone()
    valid[0] = False  # an all-invalid frame
    out = inj(x["visual"], x["coords"], valid)
    assert torch.equal(out[0], x["visual"][0])
    nan_coords = x["coords"].clone()
    nan_coords[~valid] = float("nan")
    out2 = inj(x["visual"], nan_coords, valid, scale=2.0)
    ref = inj(x["visual"], x["coords"], valid, scale=2.0)
    assert torch.isfinite(out2).all() and torch.allclose(out2, ref)
    # Changing coordinates at invalid positions changes nothing.
    moved = x["coords"].clone()
    moved[~valid] += 100.0
    assert torch.allclose(inj(x["visual"], moved, valid, scale=2.0), ref)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_and_all_invalid(dtype):
    torch.manual_seed(0)
    fusion = Fusion3D(D, G, C, num_heads=4).to(dtype)
    x = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in _inputs().items()}
    x["coords_valid"] = torch.zeros(B, N, dtype=torch.bool)
    out = fusion(**x)
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_config_errors():
    with pytest.raises(ConfigError):
        Fusion3D(D, G, viewpoint_alignment=True, cross_attention=False)
    with pytest.raises(ConfigError):
        PositionInjection(D, gate="tanh")
    with pytest.raises(ConfigError):
        CrossAttentionFusion(D, G, num_heads=5)
    with pytest.raises(UsageError):
        Fusion3D(D, G, C, num_heads=4)(_inputs()["visual"])


def test_cross_attention_parameter_names_match_vlm3r_fusion_block():
    # VLM-3R llava/model/multimodal_fusion_block/builder.py::CrossAttentionFusion state-dict keys.
    expected = {
        "clip_norm.weight", "clip_norm.bias", "spatial_encoder_norm.weight", "spatial_encoder_norm.bias",
        "clip_query_proj.weight", "clip_query_proj.bias",
        "spatial_encoder_key_proj.weight", "spatial_encoder_key_proj.bias",
        "spatial_encoder_value_proj.weight", "spatial_encoder_value_proj.bias",
        "cross_attention.in_proj_weight", "cross_attention.in_proj_bias",
        "cross_attention.out_proj.weight", "cross_attention.out_proj.bias",
        "out_proj.weight", "out_proj.bias", "out_norm.weight", "out_norm.bias",
    }
    assert set(CrossAttentionFusion(D, G, num_heads=4).state_dict()) == expected


def test_sensor_pipeline_end_to_end():
    from vlmem.geometry import (
        SensorGeometryEncoder,
        camera_features,
        coordinate_scale,
        depth_to_pointmap,
        pool_points_to_grid,
    )

    frames, h, w = 2, 7, 10
    depth = torch.rand(frames, h, w) + 1.0
    depth[1, :3] = 0.0
    poses = torch.eye(4).repeat(frames, 1, 1)
    poses[1, 0, 3] = 0.5
    k = torch.tensor([[5.0, 0, 5.0], [0, 5.0, 3.5], [0, 0, 1.0]])
    pts, valid = depth_to_pointmap(depth, k, poses)
    coords, cvalid = pool_points_to_grid(pts, valid, (3, 3))
    scale = coordinate_scale(coords, cvalid)  # one scale for the whole video
    cam = camera_features(poses, k, image_size=(h, w))
    geo = SensorGeometryEncoder(cam.shape[1], G)(coords, cvalid, cam, scale=scale)
    fusion = Fusion3D(D, G, G, num_heads=4)
    out = fusion(torch.randn(frames, N, D), coords, cvalid, geo["patch_tokens"], geo["camera_tokens"], scale)
    assert out.shape == (frames, N, D) and torch.isfinite(out).all()
