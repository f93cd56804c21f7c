from ddlight.models import ConvNet
from ddlight.ops.flops import count_macs, format_cost


def test_convnet3_macs_equal_hand_count():
    # conv1 1->128 on the padded 32x32 map, conv2 on 16x16, conv3 on 8x8, then a 2048->10 linear.
    k = 3 * 3
    convs = 128 * 1 * k * 32 * 32 + 128 * 128 * k * 16 * 16 + 128 * 128 * k * 8 * 8
    linear = 2048 * 10
    cost = count_macs(ConvNet(), (1, 28, 28))
    assert cost["by_operator"]["conv"] == convs
    assert cost["by_operator"]["linear"] == linear
    # fvcore also counts the (instance) norms; the total is conv + linear + norm, nothing hidden.
    assert cost["macs"] == convs + linear + cost["by_operator"]["group_norm"]
    assert cost["params"] == sum(p.numel() for p in ConvNet().parameters())
    assert "multiply-add = 1" in format_cost(cost)


def test_convnet7_mhist_macs():
    cost = count_macs(ConvNet(3, 2, 32, 7, im_size=224), (3, 224, 224))
    sizes = [224, 112, 56, 28, 14, 7, 3]
    convs = 32 * 3 * 9 * 224 * 224 + sum(32 * 32 * 9 * s * s for s in sizes[1:])
    assert cost["by_operator"]["conv"] == convs
    assert cost["by_operator"]["linear"] == 32 * 2
