import pytest
import torch

from ddlight.models import MLP, VGG11, AlexNet, ConvNet, ResNet18


@pytest.mark.parametrize(
    ("channel", "size", "depth", "width", "feat"),
    [
        (1, 28, 3, 128, (128, 4, 4)),
        (1, 28, 7, 32, (32, 0, 0)),
        (3, 224, 3, 128, (128, 28, 28)),
        (3, 224, 7, 32, (32, 1, 1)),
    ],
)
def test_convnet_shapes(channel, size, depth, width, feat):
    if feat[1] == 0:
        # 28x28 at depth 7 pools the map away: building it must fail loudly, not at the first forward.
        with pytest.raises(ValueError, match="below 1x1"):
            ConvNet(channel, 10, width, depth, im_size=size)
        return
    net = ConvNet(channel, 10, width, depth, im_size=size)
    assert net.feature_shape == feat
    x = torch.randn(2, channel, size, size)
    assert net(x).shape == (2, 10)
    emb = net.embed(x)
    assert emb.shape == (2, feat[0] * feat[1] * feat[2])
    acts, emb2 = net.forward_blocks(x)
    assert len(acts) == depth
    first = 32 if size == 28 else size
    assert acts[0].shape == (2, width, first, first)  # before pooling: 28x28 digits padded to 32
    assert acts[-1].shape[-1] == feat[-1] * 2 or feat[-1] == 1
    torch.testing.assert_close(emb, emb2)


def test_convnet_mnist_embedding_is_2048():
    net = ConvNet()
    assert net.embed_dim == 2048
    assert net.blocks[0][0].padding == (3, 3)


@pytest.mark.parametrize("norm", ["instancenorm", "batchnorm", "layernorm", "groupnorm", "none"])
@pytest.mark.parametrize("act", ["relu", "sigmoid", "leakyrelu"])
def test_convnet_options(norm, act):
    net = ConvNet(norm=norm, act=act, pooling="maxpooling")
    out = net(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_instancenorm_is_learnable_groupnorm():
    norm = ConvNet(norm="instancenorm").blocks[0][1]
    assert isinstance(norm, torch.nn.GroupNorm)
    assert norm.num_groups == norm.num_channels == 128 and norm.affine


def test_bad_options_raise():
    with pytest.raises(ValueError, match="norm must be one of"):
        ConvNet(norm="bn")
    with pytest.raises(ValueError, match="act must be one of"):
        ConvNet(act="gelu")


@pytest.mark.parametrize("cls", [MLP, ResNet18, VGG11, AlexNet])
@pytest.mark.parametrize(("channel", "size"), [(1, 28), (3, 32)])
def test_other_architectures(cls, channel, size):
    kwargs = {"im_size": size} if cls in (MLP, VGG11) else {}
    net = cls(channel=channel, num_classes=7, **kwargs)
    x = torch.randn(2, channel, size, size)
    assert net(x).shape == (2, 7)
    assert net.embed(x).shape == (2, net.embed_dim)


def test_resnet_norm_variants():
    bn = ResNet18(norm="batchnorm")
    inorm = ResNet18(norm="instancenorm")
    assert isinstance(bn.bn1, torch.nn.BatchNorm2d)
    assert isinstance(inorm.bn1, torch.nn.GroupNorm)


@pytest.mark.parametrize("cls", [MLP, VGG11, AlexNet, ConvNet, ResNet18])
def test_every_net_takes_the_data_shape(cls):
    """The CLI links channel/num_classes/im_size into every net; a net missing one would store the
    linked value in its hparams and fail to reload from its checkpoint."""
    import inspect

    from ddlight.cli import DATA_SHAPE_ARGS

    assert DATA_SHAPE_ARGS <= set(inspect.signature(cls).parameters)
    net = cls(channel=3, num_classes=5, im_size=32)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_vgg_refuses_images_its_pools_would_erase():
    with pytest.raises(ValueError, match="at least 32x32 images"):
        VGG11(im_size=12)


def test_vgg_and_alexnet_width_scales_every_conv_and_defaults_to_dc_channels():
    def conv_channels(net):
        return [m.out_channels for m in net.features if isinstance(m, torch.nn.Conv2d)]

    # DC's VGG11 and AlexNet channel lists, as in its networks.py
    assert conv_channels(VGG11()) == [64, 128, 256, 256, 512, 512, 512, 512]
    assert conv_channels(AlexNet()) == [128, 192, 256, 192, 192]
    assert conv_channels(VGG11(width=8)) == [8, 16, 32, 32, 64, 64, 64, 64]
    assert conv_channels(AlexNet(width=8)) == [8, 12, 16, 12, 12]
    x = torch.randn(2, 1, 28, 28)
    for net in (VGG11(width=8), AlexNet(width=8)):
        assert net.embed(x).shape == (2, net.embed_dim) and net(x).shape == (2, 10)


def test_convnet_channels_last_runs_nhwc_and_reads_nchw_weights():
    import torch

    from ddlight.models import ConvNet

    nchw = ConvNet(channel=3, num_classes=2, width=8, depth=3, im_size=32)
    nhwc = ConvNet(channel=3, num_classes=2, width=8, depth=3, im_size=32, channels_last=True)
    nhwc.load_state_dict(nchw.state_dict())  # checkpoints of either layout load into the other
    conv = nhwc.blocks[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = torch.randn(5, 3, 32, 32)
    acts, emb = nhwc.forward_blocks(x)
    assert acts[0].is_contiguous(memory_format=torch.channels_last)
    ref_acts, ref_emb = nchw.forward_blocks(x)
    torch.testing.assert_close(emb, ref_emb, rtol=1e-4, atol=1e-5)  # flattened in (C, H, W) order
    torch.testing.assert_close(nhwc(x), nchw(x), rtol=1e-4, atol=1e-5)


def test_convnet_channels_last_no_grad_takes_nhwc_only_without_a_graph():
    import pytest
    import torch

    from ddlight.models import ConvNet

    net = ConvNet(
        channel=3, num_classes=2, width=8, depth=3, im_size=32, micro_batch=0, channels_last="no_grad"
    )
    assert net.blocks[0][0].weight.is_contiguous()  # weights stay NCHW: the input alone picks NHWC
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        acts, emb_nograd = net.forward_blocks(x)
    assert acts[0].is_contiguous(memory_format=torch.channels_last) and not acts[0].is_contiguous()
    acts, emb = net.forward_blocks(x.requires_grad_(True))
    assert acts[0].is_contiguous()  # a backward follows: NCHW, where group norm's backward is fast
    torch.testing.assert_close(emb_nograd, emb.detach(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="channels_last must be true, false or 'no_grad'"):
        ConvNet(channels_last="yes")


@pytest.mark.slow  # the first compile of a graph takes seconds on two cores
def test_convnet_compile_no_grad_compiles_only_graph_free_forwards_and_keeps_their_values(monkeypatch):
    from ddlight.models import convnet
    from ddlight.ops.attention import spatial_attention

    eager = ConvNet(channel=1, num_classes=10, width=16, im_size=28, micro_batch=4)
    compiled = ConvNet(channel=1, num_classes=10, width=16, im_size=28, micro_batch=4, compile="no_grad")
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(10, 1, 28, 28)  # chunks of 4, 4 and 2: two compiled shapes
    calls = []
    real = convnet._compiled

    def counting(kind):
        calls.append((kind, torch.is_grad_enabled()))
        return real(kind)

    monkeypatch.setattr(convnet, "_compiled", counting)
    with torch.inference_mode():
        acts, emb = compiled.forward_blocks(x, reduce=lambda a: spatial_attention(a, 4.0))
        ref_acts, ref_emb = eager.forward_blocks(x, reduce=lambda a: spatial_attention(a, 4.0))
        torch.testing.assert_close(compiled.embed(x), eager.embed(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-6)
    assert calls and {grad for _, grad in calls} == {False} and {k for k, _ in calls} == {"blocks", "embed"}
    for a, r in zip([*acts, emb], [*ref_acts, ref_emb], strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)
    calls.clear()
    from ddlight.ops.flops import count_macs

    # fvcore traces under no_grad: the trace runs eager and counts the same multiply-adds
    assert count_macs(compiled, (1, 28, 28)) == count_macs(eager, (1, 28, 28)) and calls == []
    out = compiled(x.requires_grad_(True))  # a graph is recorded: eager, and the gradient flows
    out.sum().backward()
    assert calls == [] and x.grad is not None and compiled.blocks[0][0].weight.grad is not None


@pytest.mark.slow  # compiles a forward and its backward
def test_convnet_compile_true_compiles_graph_forwards_and_trains_like_eager(monkeypatch):
    from ddlight.models import convnet

    eager = ConvNet(channel=1, num_classes=10, width=16, im_size=28, micro_batch=4)
    compiled = ConvNet(channel=1, num_classes=10, width=16, im_size=28, micro_batch=4, compile=True)
    compiled.load_state_dict(eager.state_dict())
    calls = []
    real = convnet._compiled
    monkeypatch.setattr(
        convnet, "_compiled", lambda kind: calls.append(torch.is_grad_enabled()) or real(kind)
    )
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    grads = []
    for net in (compiled, eager):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        grads.append(
            dict(
                zip(
                    [n for n, _ in net.named_parameters()],
                    torch.autograd.grad(loss, list(net.parameters())),
                    strict=True,
                )
            )
        )
    assert calls == [True, True]  # both 4-image chunks of the graph forward went through the compiled body
    for name, g in grads[1].items():
        if name.endswith("0.bias"):  # a conv bias before instance norm has a zero gradient: noise only
            assert g.abs().max() < 1e-6 and grads[0][name].abs().max() < 1e-6
            continue
        # inductor recomputes activations in its backward; a ReLU input that rounds across zero differs
        assert (grads[0][name] - g).norm() <= 1e-2 * g.norm(), name


def test_convnet_compile_refuses_what_it_cannot_do_and_keeps_module_compile():
    with pytest.raises(ValueError, match="compile must be true, false, 'no_grad' or 'auto'"):
        ConvNet(compile="yes")
    net = ConvNet(width=8, compile="no_grad")
    assert net.compile_mode == "no_grad" and callable(net.compile)  # nn.Module.compile() not shadowed


@pytest.mark.parametrize("method", ["DC", "MTT", "DATM", "PAD"])
def test_methods_that_differentiate_twice_refuse_compiled_graphs(method):
    """torch.compile has no double backward: DC/DSA and trajectory matching say so when built."""
    from ddlight import methods

    net = ConvNet(channel=1, num_classes=10, width=8, im_size=28, compile=True)
    with pytest.raises(ValueError, match=rf"{method} differentiates .*compile to no_grad"):
        getattr(methods, method)(net)
    getattr(methods, method)(ConvNet(channel=1, num_classes=10, width=8, im_size=28, compile="no_grad"))


def test_convnet_chunks_twice_as_many_images_under_bf16_autocast_and_keeps_values():
    # Chunking is exact for per-sample norms; bf16 autocast only changes how many images go per chunk.
    net = ConvNet(channel=1, num_classes=10, width=8, im_size=28, micro_batch=4)
    sizes: list[int] = []
    net.blocks[0].register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    x = torch.randn(10, 1, 28, 28)
    fp32 = net(x)
    assert sizes == [4, 4, 2]
    sizes.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = net(x)
        assert sizes == [8, 2]
        sizes.clear()
        whole = ConvNet(channel=1, num_classes=10, width=8, im_size=28, micro_batch=0)
        whole.load_state_dict(net.state_dict())
        torch.testing.assert_close(bf16, whole(x))  # the same bf16 values as one whole batch
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.05, atol=0.05)


def test_convnet_lean_graph_keeps_a_quarter_less_for_the_same_second_order_gradients():
    # a gradient-of-gradient (DC/DSA, trajectory students): lean and ATen's ops agree, lean saves less
    from ddlight.methods.trajectory.unroll import SavedBytes

    torch.manual_seed(0)
    lean, plain = ConvNet(im_size=28, lean_graph=True), ConvNet(im_size=28, lean_graph=False)
    plain.load_state_dict(lean.state_dict())
    assert not plain.blocks[0][2].lean and not plain.pool.lean
    x = torch.randn(20, 1, 28, 28)
    results = []
    for net in (lean, plain):
        images = x.clone().requires_grad_(True)
        saved = SavedBytes()
        with saved:
            loss = torch.nn.functional.cross_entropy(net(images), torch.arange(20) % 10)
            grads = torch.autograd.grad(loss, list(net.parameters()), create_graph=True)
        (g_images,) = torch.autograd.grad(sum(g.square().sum() for g in grads), images)
        results.append((loss.detach(), g_images, saved.megabytes))
    (l_lean, g_lean, mb_lean), (l_plain, g_plain, mb_plain) = results
    torch.testing.assert_close(l_lean, l_plain, rtol=0, atol=0)
    torch.testing.assert_close(g_lean, g_plain, rtol=1e-4, atol=1e-5 * float(g_plain.abs().max()))
    assert mb_lean < 0.85 * mb_plain


def test_use_lean_graph_decides_only_where_the_user_left_it_open():
    from ddlight.models import use_lean_graph

    def lean_ops(net):
        return {m.lean for m in net.modules() if hasattr(m, "lean")}

    open_, off, on = ConvNet(), ConvNet(lean_graph=False), ConvNet(lean_graph=True)
    assert lean_ops(open_) == {False} and lean_ops(on) == {True}
    wrapped = torch.nn.Sequential(open_, off)
    assert use_lean_graph(wrapped, twice_differentiated=True) is wrapped
    assert lean_ops(open_) == {True} and lean_ops(off) == {False}
    use_lean_graph(on, twice_differentiated=False)
    use_lean_graph(open_, twice_differentiated=False)
    assert lean_ops(on) == {True} and lean_ops(open_) == {False}


def test_convnet_compile_auto_compiles_graph_free_forwards_after_compile_after_calls(monkeypatch, caplog):
    # the default: short runs (the tests, the quick start) stay eager; long ones compile the real side
    from ddlight.models import convnet

    calls = []
    monkeypatch.setattr(convnet, "_compiled", lambda kind: calls.append(kind) or getattr(convnet, f"_{kind}"))
    net = ConvNet(width=8, micro_batch=4, compile_after=2)
    assert ConvNet().compile_mode == "auto"
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        first = net.embed(x)
        net.forward_blocks(x)
    net(x).sum().backward()  # a graph forward neither counts nor compiles
    assert calls == [] and net.graph_free_calls == 2
    with torch.no_grad(), caplog.at_level("INFO"):
        torch.testing.assert_close(net.embed(x), first, rtol=0, atol=0)
        net.forward_blocks(x)
    assert calls == ["embed", "embed", "blocks", "blocks"]  # every 4-image chunk of both calls
    assert caplog.text.count("compiling the graph-free forward after 2 eager calls") == 1


def test_compile_training_sends_auto_networks_graph_forwards_through_the_compiled_body(monkeypatch):
    # what an evaluation's long runs switch on: "auto" nets compile their training forwards from the
    # first call; a net the user set eager (compile: false) stays eager, and graph-free calls still count
    from ddlight.models import compile_training, convnet

    calls = []
    monkeypatch.setattr(
        convnet, "_compiled", lambda kind: calls.append((kind, torch.is_grad_enabled())) or convnet._embed
    )
    auto, eager = ConvNet(width=8, micro_batch=4), ConvNet(width=8, micro_batch=4, compile=False)
    x = torch.randn(8, 1, 28, 28)
    auto(x).sum().backward()
    assert calls == [] and not auto.compile_training  # off unless the trainer of the network says so
    wrapper = torch.nn.Sequential(auto)  # reaches ConvNets inside other modules
    assert compile_training(wrapper) is wrapper and compile_training(eager).compile_training
    auto.zero_grad()
    auto(x).sum().backward()
    eager(x).sum().backward()
    assert calls == [("embed", True), ("embed", True)]  # the two 4-image chunks of the auto net only
    assert auto.blocks[0][0].weight.grad is not None and auto.graph_free_calls == 0
    compile_training(auto, False)
    auto(x)
    assert len(calls) == 2


def test_convnet_compile_auto_stays_eager_with_a_warning_when_compiling_fails(monkeypatch):
    from ddlight.models import convnet

    def broken(kind):
        def fail(*args):
            raise RuntimeError("no C++ compiler found")

        return fail

    monkeypatch.setattr(convnet, "_compiled", broken)
    net = ConvNet(width=8, micro_batch=4, compile_after=0)
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad(), pytest.warns(UserWarning, match="stays eager: torch.compile failed: no C"):
        out = net.embed(x)
    assert net.compile_mode is False
    with torch.no_grad():
        torch.testing.assert_close(out, net.embed(x), rtol=0, atol=0)
