"""decode: image files in real formats -> one uint8 N×C×H×W tensor, bad files skipped or fatal."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from cnnlab.config.schema import DataConfig
from cnnlab.data.decode import decode_files, decode_splits
from cnnlab.errors import DataError

RNG = np.random.default_rng(0)


def noise(h: int, w: int, c: int | None = 3) -> np.ndarray:
    """(H, W, C) or (H, W) random uint8 pixels."""
    return RNG.integers(0, 256, (h, w) if c is None else (h, w, c), dtype=np.uint8)


def png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(pixels, mode).save(path)
    return path


def jpeg(path: Path, pixels: np.ndarray, quality: int = 95) -> Path:
    Image.fromarray(pixels).save(path, quality=quality)
    return path


def truncated_jpeg(path: Path) -> Path:
    """A real JPEG with the second half of its bytes cut off."""
    jpeg(path, noise(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def text_as_jpg(path: Path) -> Path:
    path.write_text("not an image, just a file renamed .jpg\n")
    return path


def chw(pixels: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) numpy -> (C, H, W) torch."""
    t = torch.from_numpy(np.array(pixels))  # a writable copy
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


def cfg(**kw) -> DataConfig:
    return DataConfig(name="folder", **kw)


def test_rgb_png_round_trip_is_exact(tmp_path):
    pixels = [noise(5, 7), noise(5, 7)]
    paths = [png(tmp_path / f"{i}.png", p) for i, p in enumerate(pixels)]
    out = decode_files(paths, cfg())
    assert out.images.dtype == torch.uint8 and out.images.shape == (2, 3, 5, 7)
    for got, want in zip(out.images, pixels, strict=True):
        assert torch.equal(got, chw(want))
    assert out.kept.tolist() == [0, 1] and out.skipped == ()


def test_gray_pngs_decode_to_one_channel(tmp_path):
    pixels = noise(6, 6, None)
    out = decode_files([png(tmp_path / "g.png", pixels)], cfg())
    assert out.images.shape == (1, 1, 6, 6)
    assert torch.equal(out.images[0], chw(pixels))


def test_one_colour_image_makes_the_whole_set_rgb(tmp_path):
    gray, colour = noise(4, 4, None), noise(4, 4)
    out = decode_files([png(tmp_path / "g.png", gray), png(tmp_path / "c.png", colour)], cfg())
    assert out.images.shape == (2, 3, 4, 4)
    assert torch.equal(out.images[0], chw(gray).expand(3, -1, -1))  # gray copied to R, G and B
    assert torch.equal(out.images[1], chw(colour))


def test_channels_1_turns_colour_into_luma(tmp_path):
    colour = noise(4, 4)
    out = decode_files([png(tmp_path / "c.png", colour)], cfg(channels=1))
    luma = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert out.images.shape == (1, 1, 4, 4)
    assert (out.images[0, 0].double() - torch.from_numpy(luma)).abs().max() <= 1


def test_channels_3_widens_gray(tmp_path):
    out = decode_files([png(tmp_path / "g.png", noise(3, 3, None))], cfg(channels=3))
    assert out.images.shape == (1, 3, 3, 3)


def test_gray_palette_is_gray_and_colour_palette_is_rgb(tmp_path):
    gray = Image.fromarray(noise(4, 4, None)).convert("P")  # L -> P keeps a gray palette
    gray.save(tmp_path / "gray.gif")
    out = decode_files([tmp_path / "gray.gif"], cfg())
    assert out.images.shape == (1, 1, 4, 4)
    assert torch.equal(out.images[0], chw(np.asarray(gray.convert("L"))))

    colour = Image.fromarray(noise(4, 4)).quantize(16)
    colour.save(tmp_path / "colour.png")
    out = decode_files([tmp_path / "colour.png"], cfg())
    assert torch.equal(out.images[0], chw(np.asarray(colour.convert("RGB"))))


def test_transparency_is_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: kept as is
    rgba[1, 1] = (10, 20, 30, 0)  # transparent: white, not the hidden colour
    out = decode_files([png(tmp_path / "a.png", rgba, "RGBA")], cfg())
    assert out.images.shape == (1, 3, 2, 2)
    assert out.images[0, :, 0, 0].tolist() == [10, 20, 30]
    assert out.images[0, :, 1, 1].tolist() == [255, 255, 255]


def test_16_bit_gray_is_scaled_not_clipped(tmp_path):
    deep = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    out = decode_files([tmp_path / "deep.png"], cfg())
    assert out.images[0, 0].tolist() == [[0, 100], [255, 200]]


def test_bilevel_and_float_gray_span_0_to_255(tmp_path):
    Image.fromarray(np.array([[0, 1]], dtype=bool)).save(tmp_path / "bits.png")  # mode "1"
    Image.fromarray(np.array([[0.0, 0.5]], dtype=np.float32)).save(tmp_path / "float.tif")
    out = decode_files([tmp_path / "bits.png", tmp_path / "float.tif"], cfg())
    assert out.images[:, 0, 0].tolist() == [[0, 255], [0, 128]]


def test_gray_with_alpha_stays_gray(tmp_path):
    la = np.array([[[30, 255], [30, 0]]], dtype=np.uint8)  # (1, 2, 2): opaque, transparent
    out = decode_files([png(tmp_path / "la.png", la, "LA")], cfg())
    assert out.images.shape == (1, 1, 1, 2)
    assert out.images[0, 0, 0].tolist() == [30, 255]


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "red.jpg")  # pure red
    out = decode_files([tmp_path / "red.jpg"], cfg())
    assert out.images.shape == (1, 3, 8, 8)
    r, g, b = out.images[0, :, 4, 4].tolist()
    assert r > 200 and g < 60 and b < 60


def test_image_size_resizes_every_image_to_a_square(tmp_path):
    paths = [
        png(tmp_path / "wide.png", np.full((10, 20, 3), 40, np.uint8)),
        jpeg(tmp_path / "big.jpg", np.full((256, 192, 3), 200, np.uint8)),  # decoded at 1/8
    ]
    out = decode_files(paths, cfg(image_size=16))
    assert out.images.shape == (2, 3, 16, 16)
    assert (out.images[0] == 40).all()
    assert (out.images[1].int() - 200).abs().max() <= 2


def test_mixed_sizes_without_image_size_name_two_files_and_the_fix(tmp_path):
    a = png(tmp_path / "a.png", noise(8, 8))
    b = png(tmp_path / "b.png", noise(8, 12))
    with pytest.raises(DataError) as e:
        decode_files([a, b], cfg())
    msg = str(e.value)
    assert f"{a} is 8×8" in msg and f"{b} is 8×12" in msg and "data.image_size=N" in msg
    assert "\n" not in msg


def test_bad_files_are_skipped_and_listed(tmp_path):
    good = [png(tmp_path / f"{i}.png", noise(4, 4)) for i in range(2)]
    cut = truncated_jpeg(tmp_path / "cut.jpg")
    text = text_as_jpg(tmp_path / "text.jpg")
    out = decode_files([good[0], cut, text, good[1]], cfg(on_bad_file="skip"))
    assert out.images.shape == (2, 3, 4, 4) and out.kept.tolist() == [0, 3]
    assert [s.split(": ")[0] for s in out.skipped] == [str(cut), str(text)]
    assert "truncated" in out.skipped[0]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # never half-loads a file


def test_bad_file_with_on_bad_file_error_names_it(tmp_path):
    good = png(tmp_path / "ok.png", noise(4, 4))
    cut = truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match=f"^{cut}: .*truncated.*on_bad_file=skip"):
        decode_files([good, cut], cfg(on_bad_file="error"))


def test_all_bad_or_no_files_is_an_error(tmp_path):
    with pytest.raises(DataError, match="none of the 2 image files could be decoded"):
        decode_files([text_as_jpg(tmp_path / "a.jpg"), truncated_jpeg(tmp_path / "b.jpg")], cfg())
    with pytest.raises(DataError, match="no image files"):
        decode_files([], cfg())


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_order_is_kept_across_threads_and_chunks(tmp_path, workers):
    # 150 files span three 64-file chunks; pixel value == position proves the order.
    paths = [png(tmp_path / f"{i}.png", np.full((2, 2), i, np.uint8)) for i in range(150)]
    out = decode_files(paths, cfg(num_workers=workers))
    assert out.images[:, 0, 0, 0].tolist() == list(range(150))


def test_splits_share_one_channel_count_and_keep_their_labels(tmp_path):
    train = [png(tmp_path / f"t{i}.png", np.full((3, 3), i, np.uint8)) for i in range(3)]
    val = [png(tmp_path / "v.png", noise(3, 3)), truncated_jpeg(tmp_path / "bad.jpg")]
    listing = {"train": (train, [0, 1, 1]), "val": (val, [1, 0])}
    splits = decode_splits(cfg(), listing, ("a", "b"))
    assert splits.train.images.shape == (3, 3, 3, 3)  # widened: val has a colour image
    assert splits.val.images.shape == (1, 3, 3, 3)
    assert splits.train.labels.tolist() == [0, 1, 1] and splits.val.labels.tolist() == [1]
    assert splits.train.images[:, 0, 0, 0].tolist() == [0, 1, 2]
    assert len(splits.skipped) == 1 and splits.skipped[0].startswith(str(val[1]))


def test_a_file_past_the_size_cap_is_skipped_unread(tmp_path, monkeypatch):
    from cnnlab.data import decode

    ok = tmp_path / "ok.png"
    Image.new("L", (4, 4), 9).save(ok)
    big = tmp_path / "big.png"
    big.write_bytes(ok.read_bytes() + bytes(200))
    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 150)
    result = decode.decode_files([ok, big], DataConfig(num_workers=0))
    assert len(result.images) == 1
    assert result.skipped == (f"{big}: larger than 150 bytes; not read as an image",)
