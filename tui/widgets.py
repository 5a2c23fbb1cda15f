"""The app's own widgets: a cat drawn in half blocks or through the terminal's graphics
protocol, the die panel, and the panels built from snapshots.

`CatPicture` draws a (H, W, 3) uint8 picture as rows of '▀' whose foreground is the upper pixel
and background the lower one (as installation.termart does for plain terminals), scaled by an
integer factor (nearest neighbour) so that a cat stays crisp; `fit=True` picks the largest factor
that fits the widget. Strips are built once per picture and size, so redrawing costs nothing.
`ProtocolCatPicture` shows the same cat in the same cell box through textual-image (kitty's
graphics protocol or Sixel), which only the CLI can decide is possible, before the app starts;
`cat_picture(graphics)` picks one. textual_image is imported only when a protocol is in use, so
the cold start and the tests do not pay for it.

`DiePanel` shows the dice: the last faces drawn as the OLED shows them (1-bit, `face_art`: half
blocks, 32 columns x 16 rows a face; braille, 2x4 dots a cell, 16 x 8, where the screen is short:
both keep a face square), a histogram of the faces rolled and the fairness test in words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from models.die_reference import face_from_pages
from tui import words

if TYPE_CHECKING:
    from installation.dice import Fairness
    from installation.gallery import Exhibit, Roll
    from installation.station import DiceSnapshot

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


# --------------------------------------------------------------------------------------------
# Dice

FACE_CELLS = 32  # a face's width in half blocks: one cell per pixel column
FACE_ROWS = 16  # and its height: two pixel rows per cell
FACE_GAP = 2  # cells between two faces
# A cell's glyph from its lit pixels: half blocks index top + 2 * bottom. Braille cells hold 2x4
# dots: U+2800 plus these bits, by [row][column] of the dot in its cell (an empty cell: a space).
HALF_BLOCKS = " ▀▄█"
BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
BRAILLE_BASE = 0x2800
EIGHTHS = " ▏▎▍▌▋▊▉"  # a bar's last, partial cell
FULL_CELL = "█"
SHARE_MARK = "┊"  # where a bar would end on a perfectly even die
OLED = Style(color="#dcecff", bgcolor="#000000")  # the SSD1306's lit pixels on its black glass


def face_art(face: bytes, *, small: bool = False) -> list[str]:
    """128 SSD1306 page bytes -> the 32x32 face as rows of text: 16 rows of 32 half blocks, or
    `small`, 8 rows of 16 braille cells (2x4 dots each). Lit pixels are ink, so the art reads the
    same as plain text (a log, a test) as on the screen; a terminal cell is about twice as high
    as wide, so both forms keep the face square."""
    bits = face_from_pages(face).astype(np.intp)  # (32, 32) 0/1
    if not small:
        return ["".join(HALF_BLOCKS[v] for v in row) for row in bits[0::2] + 2 * bits[1::2]]
    dots = np.zeros((8, 16), dtype=np.intp)  # (cell row, cell column)
    for dy, row in enumerate(BRAILLE_BITS):
        for dx, bit in enumerate(row):
            dots += bit * bits[dy::4, dx::2]
    return ["".join(chr(BRAILLE_BASE + v) if v else " " for v in row) for row in dots]


def histogram_bars(counts: dict[int, int], cells: int) -> list[str]:
    """One bar per face (in `counts`' order), `cells` wide for the most rolled face, in eighth
    blocks; a bar that falls short of the fair share (rolls / faces) shows where it lies with
    `SHARE_MARK`, so an uneven die is seen before its test is read. Each bar is `cells` wide."""
    top = max(counts.values(), default=0)
    if top == 0 or cells <= 0:
        return [" " * max(cells, 0) for _ in counts]
    share = sum(counts.values()) / len(counts)
    mark = min(cells - 1, int(share / top * cells))
    bars = []
    for count in counts.values():
        full, part = divmod(round(count / top * cells * 8), 8)
        bar = FULL_CELL * full + (EIGHTHS[part] if part else "")
        if len(bar) <= mark:
            bar = bar.ljust(mark) + SHARE_MARK
        bars.append(bar.ljust(cells)[:cells])
    return bars


class DieFaces(Widget):
    """The last faces rolled, newest on the left, as many as fit the width, each with its pips
    and its die under it. Drawn in half blocks when the widget is at least `FACE_ROWS` + 1 rows
    high (the stylesheet gives it that on a tall screen), else in braille at half size."""

    DEFAULT_CSS = f"""
    DieFaces {{ width: 1fr; height: {FACE_ROWS // 2 + 1}; }}
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rolls: list[Roll] = []
        self._art: dict[tuple[int, bool], list[str]] = {}  # (roll id, small) -> rows

    def show(self, rolls: list[Roll]) -> None:
        if [r.id for r in rolls] == [r.id for r in self.rolls]:
            return
        self.rolls = list(rolls)
        ids = {r.id for r in rolls}
        self._art = {key: art for key, art in self._art.items() if key[0] in ids}
        self.refresh()

    @property
    def small(self) -> bool:
        """Braille faces (16 x 8 cells): the widget is too low for half blocks."""
        return self.size.height < FACE_ROWS + 1

    @property
    def face_cells(self) -> int:
        return FACE_CELLS // 2 if self.small else FACE_CELLS

    def fitting(self) -> list[Roll]:
        """The rolls whose faces fit the width, newest first."""
        n = (self.size.width + FACE_GAP) // (self.face_cells + FACE_GAP)
        return self.rolls[:max(0, n)]

    def art(self, roll: Roll) -> list[str]:
        key = (roll.id, self.small)
        if key not in self._art:
            self._art[key] = face_art(roll.face, small=self.small)
        return self._art[key]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        return self._line(y).extend_cell_length(width).crop(0, width).apply_style(self.rich_style)

    def _line(self, y: int) -> Strip:
        rolls = self.fitting()
        if not self.rolls:
            if y == self.size.height // 2:
                return Strip([Segment("no rolls yet: the faces appear here", Style(dim=True))])
            return Strip([])
        cells = self.face_cells
        rows = FACE_ROWS // 2 if self.small else FACE_ROWS
        gap = Segment(" " * FACE_GAP)
        segments: list[Segment] = []
        for i, roll in enumerate(rolls):
            if i:
                segments.append(gap)
            if y < rows:
                segments.append(Segment(self.art(roll)[y], OLED))
            elif y == rows:
                caption = words.roll_caption(roll, cells).ljust(cells)
                segments.append(Segment(caption, Style(bold=True) if i == 0 else Style(dim=True)))
        return Strip(segments)


class DieHistogram(Widget):
    """Six bars, one per face, with their counts, and the fair share they are measured against."""

    DEFAULT_CSS = """
    DieHistogram { width: 20; height: 8; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.fairness: Fairness | None = None

    def show(self, fairness: Fairness) -> None:
        if fairness != self.fairness:
            self.fairness = fairness
            self.refresh()

    def render(self) -> Text:
        f = self.fairness
        if f is None:
            return Text()
        counts = [f"{c:,}" for c in f.counts.values()]
        count_cells = max(len(c) for c in counts)
        cells = self.size.width - 3 - count_cells  # "6 " before the bar, " " after it
        bar_style = "bold red" if words.unfair(f) else "#5fafff"
        text = Text(no_wrap=True, overflow="crop")
        for face, bar, count in zip(f.counts, histogram_bars(f.counts, cells), counts,
                                    strict=True):
            text.append(f"{face} ", style="bold")
            body, mark, rest = bar.partition(SHARE_MARK)
            text.append(body, style=bar_style)
            text.append(mark + rest, style="dim")
            text.append(f" {count:>{count_cells}}\n")
        if f.rolls:
            text.append(f"\n{SHARE_MARK} {words.fair_share(f)}", style="dim")
        return text


class DiePanel(Vertical):
    """The dice in the room: the last faces, the histogram, the fairness test in words."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="die-top"):
            yield DieFaces(id="die-faces")
            yield DieHistogram(id="die-histogram")
        yield Static(id="die-fairness")

    def show(self, dice: DiceSnapshot) -> None:
        f = dice.fairness
        self.query_one(DieFaces).show(dice.rolls)
        self.query_one(DieHistogram).show(f)
        style = "bold red" if words.unfair(f) else ("yellow" if words.few_rolls(f) else "")
        self.query_one("#die-fairness", Static).update(Text(words.fairness_words(f), style=style))
