"""The app's own widgets: a cat drawn in half blocks or through the terminal's graphics
protocol, and the panels built from snapshots.

`CatPicture` draws a (H, W, 3) uint8 picture as rows of '▀' whose foreground is the upper pixel
and background the lower one (as installation.termart does for plain terminals), scaled by an
integer factor (nearest neighbour) so that a cat stays crisp; `fit=True` picks the largest factor
that fits the widget. Strips are built once per picture and size, so redrawing costs nothing.
`ProtocolCatPicture` shows the same cat in the same cell box through textual-image (kitty's
graphics protocol or Sixel), which only the CLI can decide is possible, before the app starts;
`cat_picture(graphics)` picks one. textual_image is imported only when a protocol is in use, so
the cold start and the tests do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from tui import words

if TYPE_CHECKING:
    from installation.gallery import Exhibit

UPPER_HALF = "\u2580"
# How the large cats may be drawn (`QcatApp(graphics=...)`): through a terminal graphics protocol
# with textual-image ("tgp": kitty's; "sixel"), or in half blocks.
GRAPHICS = ("tgp", "sixel", "halfblocks")
PROTOCOLS = ("tgp", "sixel")
# The picture handed to textual-image: the 64-px cat enlarged with NEAREST to this many pixels a
# side, so that the smooth resize to the cell box's pixels leaves crisp cat pixels, not a blur.
PROTOCOL_PICTURE_PX = 512


def scale_to_fit(shape: tuple[int, int], width: int, height: int) -> int:
    """The largest integer scale at which an (H, W) picture drawn two pixel rows per cell fits
    `width` × `height` cells (at least 1: a too-small widget crops rather than shows nothing)."""
    h, w = shape
    return max(1, min(width // w, (height * 2) // h))


def picture_strips(rgb: np.ndarray, scale: int, width: int) -> list[Strip]:
    """rgb: (H, W, 3) uint8, H even -> H*scale/2 strips of half blocks, centred in `width`."""
    big = rgb.repeat(scale, axis=0) if scale > 1 else rgb
    h, w, _ = rgb.shape
    cols = w * scale
    pad = max(0, (width - cols) // 2)
    blank = [Segment(" " * pad)] if pad else []
    strips = []
    for y in range(0, big.shape[0] - 1, 2):
        top, bottom = big[y], big[y + 1]
        segments = list(blank)
        for x in range(w):
            t, b = top[x], bottom[x]
            style = Style.from_color(_rgb(t), _rgb(b))
            segments.append(Segment(UPPER_HALF * scale, style))
        strips.append(Strip(segments, pad + cols))
    return strips


def _rgb(p: np.ndarray) -> Any:
    from rich.color import Color

    return Color.from_rgb(int(p[0]), int(p[1]), int(p[2]))


class CatPicture(Widget):
    """A cat in colour half blocks. `scale`: a fixed factor, or `fit=True` for the largest that
    fits. Without a picture it says `empty_text`."""

    DEFAULT_CSS = """
    CatPicture { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, scale: int = 1, fit: bool = False,
                 empty_text: str = "no exhibit yet", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scale = scale
        self.fit = fit
        self.empty_text = empty_text
        self.rgb: np.ndarray | None = None
        self._strips: list[Strip] = []
        self._built_for: tuple[int, int] | None = None

    def show(self, rgb: np.ndarray | None) -> None:
        if rgb is self.rgb:
            return
        self.rgb = rgb
        self._built_for = None
        self.refresh()

    def _scale_now(self) -> int:
        if self.rgb is None:
            return 1
        if self.fit:
            return scale_to_fit(self.rgb.shape[:2], self.size.width, self.size.height)
        return self.scale

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return 64 * self.scale if self.rgb is None else self.rgb.shape[1] * self._scale_now()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 32 * self.scale if self.rgb is None else self.rgb.shape[0] * self._scale_now() // 2

    def render_line(self, y: int) -> Strip:
        return self._line(y).apply_style(self.rich_style)  # blanks take the widget's background

    def _line(self, y: int) -> Strip:
        width = self.size.width
        if self.rgb is None:
            if y == self.size.height // 2:
                text = self.empty_text.center(width)[:width]
                return Strip([Segment(text, Style(dim=True))], len(text))
            return Strip.blank(width)
        key = (width, self.size.height)
        if self._built_for != key:
            self._strips = picture_strips(self.rgb, self._scale_now(), width)
            self._built_for = key
        top = max(0, (self.size.height - len(self._strips)) // 2) if self.fit else 0
        if 0 <= y - top < len(self._strips):
            return self._strips[y - top].extend_cell_length(width).crop(0, width)
        return Strip.blank(width)


class ProtocolCatPicture(CatPicture):
    """A `CatPicture` whose cat is a textual-image widget (`graphics` "tgp" or "sixel") sized to
    the cell box the half blocks would fill: 64 × 32 cells at scale 1, the same integer scale
    with `fit=True`, centred the same way. Without a picture it says `empty_text` as the half
    blocks do."""

    DEFAULT_CSS = """
    ProtocolCatPicture { align-horizontal: center; }
    ProtocolCatPicture.-fit { align-vertical: middle; }
    """

    def __init__(self, graphics: str, *, scale: int = 1, fit: bool = False,
                 empty_text: str = "no exhibit yet", id: str | None = None) -> None:
        if graphics not in PROTOCOLS:
            raise ValueError(f"graphics must be one of {', '.join(PROTOCOLS)}, not {graphics!r}")
        super().__init__(scale=scale, fit=fit, empty_text=empty_text, id=id)
        self.graphics = graphics
        self.image: Widget | None = None  # the textual-image widget, from the first picture on
        if fit:
            self.add_class("-fit")

    def show(self, rgb: np.ndarray | None) -> None:
        if rgb is self.rgb:
            return
        self.rgb = rgb
        if rgb is not None:
            picture = protocol_picture(rgb)
            if self.image is None:
                self.image = self._image_class()(picture, classes="cat-image")
                self.mount(self.image)
            else:
                self.image.image = picture  # type: ignore[attr-defined]
            self._fit_image()
        if self.image is not None:
            self.image.display = rgb is not None
        self.refresh()

    def _image_class(self) -> type[Widget]:
        """textual-image's widget for the protocol (imported here: only when one is in use)."""
        from textual_image.widget import SixelImage, TGPImage

        return SixelImage if self.graphics == "sixel" else TGPImage

    def on_resize(self) -> None:
        self._fit_image()

    def _fit_image(self) -> None:
        """Size the image to the half blocks' box at the scale they would use now."""
        if self.image is None or self.rgb is None:
            return
        scale = self._scale_now()
        h, w = self.rgb.shape[:2]
        self.image.styles.width = w * scale
        self.image.styles.height = h * scale // 2

    def _line(self, y: int) -> Strip:
        if self.rgb is not None:  # the image widget draws the cat; this is its background
            return Strip.blank(self.size.width)
        return super()._line(y)


def protocol_picture(rgb: np.ndarray) -> Any:
    """rgb: (H, W, 3) uint8 -> a PIL image enlarged by an integer factor with NEAREST to about
    `PROTOCOL_PICTURE_PX` a side (crisp pixels whatever the terminal does to it next)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    factor = max(1, PROTOCOL_PICTURE_PX // max(h, w))
    return Image.fromarray(np.ascontiguousarray(rgb)).resize(
        (w * factor, h * factor), Image.Resampling.NEAREST)


def cat_picture(graphics: str, **kwargs: Any) -> CatPicture:
    """The picture widget for `graphics` (one of `GRAPHICS`): textual-image's for a protocol,
    half blocks otherwise. kwargs: CatPicture's."""
    if graphics in PROTOCOLS:
        return ProtocolCatPicture(graphics, **kwargs)
    return CatPicture(**kwargs)


class ExhibitCaption(Static):
    """The newest exhibit in words: id, mood, verdict, who made it, where its chance came from."""

    def show(self, exhibit: Exhibit | None, error: str = "") -> None:
        if exhibit is None:
            self.update(Text("No exhibit yet: the first cat appears here.", style="dim"))
            return
        text = Text()
        text.append(f"#{exhibit.id} ", style="bold")
        text.append(exhibit.mood, style="bold green" if exhibit.mood == "motivated" else "bold red")
        text.append(f"  {words.made_by(exhibit)}\n", style="dim")
        text.append(f"“{exhibit.verdict_text}”\n", style="italic")
        text.append("randomness: ", style="dim")
        text.append(words.source_words(exhibit.source),
                    style="bold red" if not exhibit.quantum else "")
        if error:
            text.append(f"\n{error}", style="red")
        self.update(text)


class PoolPanel(Static):
    """The entropy pool's numbers."""

    def show(self, pool: dict[str, Any] | None, error: str = "") -> None:
        if pool is None:
            self.update(Text(f"the pool cannot be read: {error}", style="red"))
            return
        text = Text()
        rows = words.pool_lines(pool)
        pad = max(len(label) for label, _ in rows)
        for i, (label, value) in enumerate(rows):
            text.append(f"{label:<{pad}}  ", style="dim")
            text.append(value, style="bold" if label == "exhibits left" else "")
            if i < len(rows) - 1:
                text.append("\n")
        self.update(text)
