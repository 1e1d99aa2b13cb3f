"""Digits in any frame made into MNIST inputs as MNIST made its own: the same digit in, the same input out."""

import numpy as np
import pytest
import torch
from frames import SIZES, Frame, place
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropcli.digits import BOX, CENTRE, MIN_INK_PIXELS, to_mnist


@pytest.fixture(scope="module")
def digits():
    from dropcli.data import load_dataset

    test = load_dataset("mnist").test
    return (test.x[:20].reshape(20, 28, 28).numpy() * 255).round().astype(np.uint8), test.y[:20].numpy()


def ink_box(x):
    rows, cols = np.nonzero(x.any(axis=1))[0], np.nonzero(x.any(axis=0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def similarity(a, b):
    """The best correlation of a and b over shifts of at most one pixel (MNIST's own centring
    rounds to whole pixels, so a digit may land one pixel over)."""
    return max(np.corrcoef(np.roll(a, (dy, dx), (0, 1)).ravel(), b.ravel())[0, 1]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_an_mnist_digit_goes_through_unchanged(digits):
    for digit in digits[0]:
        out = to_mnist(digit / 255)
        assert not out.inverted and out.notes == []
        assert np.abs(out.x - digit / 255).max() < 0.015  # at most a rescaled ink level, never moved


def test_the_result_is_cropped_fitted_and_centred_as_mnist(digits):
    from scipy import ndimage

    frame = place(digits[0][3], Frame(640, 480, margin=0.4, x=0.9, y=0.1), seed=3)
    out = to_mnist(frame / 255)
    assert max(ink_box(out.x)) == BOX
    assert np.allclose(ndimage.center_of_mass(out.x), (CENTRE, CENTRE), atol=0.5)
    assert out.inverted and out.x.dtype == np.float32 and out.x.shape == (28, 28) and out.x.min() >= 0 <= out.x.max() <= 1


@st.composite
def frames(draw):
    width, height = draw(st.sampled_from(SIZES))
    return Frame(width, height, margin=draw(st.floats(0, 0.5)), x=draw(st.floats(0, 1)), y=draw(st.floats(0, 1)),
                 dark_ink=draw(st.booleans()), paper=draw(st.floats(0.7, 0.95)), ink=draw(st.floats(0.0, 0.3)),
                 gradient=draw(st.floats(0, 0.1)), noise=draw(st.floats(0, 0.03)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=frames(), which=st.integers(0, 19), seed=st.integers(0, 2**16))
def test_any_frame_gives_the_digit_mnist_has(digits, f, which, seed):
    """4:3 frames, margins up to half the frame, anywhere in it, either polarity, uneven light, noise."""
    digit = digits[0][which]
    out = to_mnist(place(digit, f, seed) / 255)
    assert out.inverted == f.dark_ink and out.notes == []
    assert similarity(out.x, to_mnist(digit / 255).x) > 0.8


def test_a_tightly_cropped_digit_keeps_its_aspect_ratio(digits):
    one = digits[0][2]  # a 1: tall and thin
    rows, cols = np.nonzero(one.any(axis=1))[0], np.nonzero(one.any(axis=0))[0]
    tight = one[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    from PIL import Image

    photo = np.asarray(Image.fromarray(255 - tight).resize((tight.shape[1] * 5, tight.shape[0] * 5))) / 255
    out = to_mnist(photo)
    h, w = ink_box(out.x)
    assert h == BOX and abs(w - BOX * tight.shape[1] / tight.shape[0]) <= 2  # not stretched to a square


def test_a_tiny_digit_is_read_but_named(digits):
    out = to_mnist(place(digits[0][0], Frame(320, 240, margin=0.96), seed=1) / 255)
    assert max(out.ink_size) < MIN_INK_PIXELS
    assert any("too small to read reliably" in n for n in out.notes)


def test_ambiguous_polarity_is_named_and_the_flag_decides(digits):
    frame = place(digits[0][0], Frame(320, 240, margin=0.3), seed=1).astype(np.float64) / 255
    frame[:, 160:] = 1 - frame[:, 160:]  # half the paper light, half dark: a shadow, a desk edge
    out = to_mnist(frame)
    assert any("polarity is ambiguous" in n and "--invert" in n for n in out.notes)
    assert to_mnist(frame, invert=True).notes == [] and to_mnist(frame, invert=True).inverted


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_an_image_without_ink_says_so(level):
    out = to_mnist(np.full((120, 160), level))
    assert not out.x.any() and not out.found
    assert out.notes == ["no digit found: the image is almost uniform; give a photo, scan or drawing of one digit"]


def test_the_prediction_is_kept_in_frames(digits):
    """A small model trained in seconds: digits in 640x480 (and other) frames, either polarity,
    off-centre, are predicted as the same digits at 28x28."""
    from conftest import small_config

    from dropcli.data import Dataset, Split, load_dataset
    from dropcli.evaluation import probabilities
    from dropcli.train import train

    mnist = load_dataset("mnist")
    data = Dataset("mnist", Split(mnist.train_full.x[:6000], mnist.train_full.y[:6000]), mnist.test, "first 6,000")
    params = train(small_config(epochs=3, train_size=5000, validation_size=1000, keep_prob=(1.0,)), data).params
    images, labels = digits
    rng = np.random.default_rng(0)
    framed = [to_mnist(place(d, Frame(*SIZES[i % 4], margin=rng.uniform(0, 0.5), x=rng.uniform(), y=rng.uniform(),
                                     dark_ink=bool(i % 2)), seed=i) / 255).x for i, d in enumerate(images)]
    plain = probabilities(params, torch.from_numpy(images.reshape(20, 784) / 255).float())[0].argmax(1)
    got = probabilities(params, torch.from_numpy(np.stack(framed).reshape(20, 784)))[0].argmax(1)
    assert (plain == torch.from_numpy(labels)).sum() >= 17  # the model reads these digits
    assert (got == plain).sum() >= 19, (got, plain)
