"""OCR: character error rate on pages of known text, pages per second per core, and the extraction child's memory.

Every page is made here, with its text known:
- `pdf-*`: the demo's text PDFs (the Bitcoin paper, "The Crazy Ones") rendered by PDFium at 150 and 300 dpi;
  the reference is the PDF's own text layer;
- `drawn-*`: the prose paragraphs of the demo's getting-started.md drawn with Pillow on a letter page in four
  fonts (DejaVu Sans and Serif, Liberation Serif and Mono, from Debian's fonts-dejavu-core and fonts-liberation),
  11 pt at 150 and 300 dpi, then a skewed (2.5 degrees) and a noisy (Gaussian noise and salt and pepper) variant;
- `corpus-*`: the image-only PDFs of the test corpus (tests/fixtures/pdf, `expect: no-text` in EXPECTED.json)
  that hold text, against transcripts typed from the page images; the others must give no text at all.

The character error rate (CER) is the edit distance between reference and OCR output over the reference's
length, after NFKC and with every run of whitespace taken as one space. Pages per second per core divide the
pages by the CPU seconds of this process and of the Tesseract processes it ran (OMP_THREAD_LIMIT=1, as in
production). Memory: a 10-page 300 dpi scan through the sandbox (`extract_file`, as the handler runs it),
sampling the resident set of the extraction child and of its Tesseract every 10 ms; and one page at the pixel
limit. Results go to bench/results/ocr.json.

    python -m bench.ocr          # about two minutes on one core
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import re
import tempfile
import threading
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pypdfium2
from PIL import Image, ImageDraw, ImageFont

from handlers.adapters.ocr import tesseract_reader
from handlers.adapters.sandbox import extract_file
from handlers.model import ExtractLimits, OcrOptions, OcrText
from handlers.stages.extract import Ocr, extract_text

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_FILES = REPO_ROOT / "handlers" / "develop" / "files"
CORPUS = REPO_ROOT / "tests" / "fixtures" / "pdf"
RESULTS = Path(__file__).parent / "results" / "ocr.json"
FONTS = {
    "dejavu-sans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "dejavu-serif": "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "liberation-serif": "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "liberation-mono": "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
}
TEXT_PDFS = {"bitcoin": "pdfjs-issue13201-bitcoin-paper.pdf", "crazy-ones": "pypdf-crazyones-ligatures.pdf"}
# Typed from the rendered pages, in reading order (a two-column page: the left column, then the right).
CORPUS_TRANSCRIPTS = {
    ("pdfminer-jbig2-image-only.pdf", 1): "It Doesn't Work?!?!?!",
    ("pypdf-encrypted-empty-password-no-id.pdf", 2): (
        "WO 2003/036426 A3 TR), OAPI patent (BF, BJ, CF, CG, CI, CM, GA, GN, GQ, GW, ML, MR, NE, SN, TD, TG). "
        "Published: — with international search report — before the expiration of the time limit for amending "
        "the claims and to be republished in the event of receipt of amendments (88) Date of publication of the "
        'international search report: 1 April 2004 For two-letter codes and other abbreviations, refer to the "Guid- '
        'ance Notes on Codes and Abbreviations" appearing at the begin- ning of each regular issue of the PCT Gazette.'
    ),
}
LETTER_INCHES = (8.5, 11.0)
FONT_POINTS = 11
SKEW_DEGREES = 2.5
NOISE_SIGMA = 25.0
SALT_AND_PEPPER = 0.005
SEED = 20261207


def normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def edit_distance(reference: str, hypothesis: str) -> int:
    """Levenshtein distance, one row at a time; within a row insertions are a running minimum."""
    if not reference or not hypothesis:
        return max(len(reference), len(hypothesis))
    codes = np.frombuffer(hypothesis.encode("utf-32-le"), dtype=np.uint32)
    index = np.arange(len(hypothesis) + 1)
    previous = index.copy()
    for row, char in enumerate(reference.encode("utf-32-le")[i : i + 4] for i in range(0, 4 * len(reference), 4)):
        cost = (codes != np.frombuffer(char, dtype=np.uint32)[0]).astype(np.int64)
        best = np.empty_like(previous)
        best[0] = row + 1
        best[1:] = np.minimum(previous[1:] + 1, previous[:-1] + cost)
        previous = np.minimum.accumulate(best - index) + index
    return int(previous[-1])


def cer(reference: str, hypothesis: str) -> float:
    reference, hypothesis = normalised(reference), normalised(hypothesis)
    return edit_distance(reference, hypothesis) / max(len(reference), 1)


def word_recall(reference: str, hypothesis: str) -> float:
    """The share of the reference's words OCR found, in any order (a two-column page is not read in order)."""
    wanted = Counter(normalised(reference).split())
    found = Counter(normalised(hypothesis).split())
    return sum((wanted & found).values()) / max(sum(wanted.values()), 1)


def paragraphs() -> list[str]:
    """The prose paragraphs of the demo's getting-started.md, without Markdown's marks."""
    text = (DEMO_FILES / "getting-started.md").read_text(encoding="utf-8")
    kept = []
    for block in (block.strip() for block in text.split("\n\n")):
        if block and not block.startswith(("#", "-", "```", "|")):
            kept.append(" ".join(re.sub(r"[`*]", "", block).split()))
    return kept


def drawn_page(font_path: str, dpi: int, text: list[str]) -> Image.Image:
    width, height = (round(side * dpi) for side in LETTER_INCHES)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(font_path, round(FONT_POINTS * dpi / 72))
    margin, line_height = dpi, round(FONT_POINTS * 1.4 * dpi / 72)
    y = margin
    for paragraph in text:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if draw.textlength(candidate, font=font) > width - 2 * margin:
                draw.text((margin, y), line, font=font, fill=0)
                y += line_height
                line = word
            else:
                line = candidate
        draw.text((margin, y), line, font=font, fill=0)
        y += 2 * line_height
    return page


def skewed(page: Image.Image) -> Image.Image:
    return page.rotate(SKEW_DEGREES, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def noisy(page: Image.Image) -> Image.Image:
    generator = np.random.default_rng(SEED)
    pixels = np.asarray(page, dtype=np.float64) + generator.normal(0, NOISE_SIGMA, (page.height, page.width))
    flips = generator.random((page.height, page.width))
    pixels[flips < SALT_AND_PEPPER / 2] = 0
    pixels[flips > 1 - SALT_AND_PEPPER / 2] = 255
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def rendered(path: Path, dpi: int) -> tuple[Image.Image, str]:
    document = pypdfium2.PdfDocument(str(path))
    try:
        page = document[0]
        image = page.render(scale=dpi / 72, grayscale=True).to_pil()
        return image, str(page.get_textpage().get_text_bounded())
    finally:
        document.close()


class Meter:
    """OCR calls timed in wall-clock and CPU seconds (this process and the Tesseract processes it waited for)."""

    def __init__(self) -> None:
        self.read = tesseract_reader(OcrOptions())
        self.pages = 0
        self.wall = 0.0
        self.cpu = 0.0

    def __call__(self, image: Image.Image) -> OcrText:
        before, started = os.times(), time.perf_counter()
        found = self.read(image)
        after = os.times()
        self.wall += time.perf_counter() - started
        self.cpu += sum(after[:4]) - sum(before[:4])
        self.pages += 1
        return found


def quality_cases(meter: Meter) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def measure(case: str, variant: str, image: Image.Image, reference: str) -> None:
        cpu_before = meter.cpu
        found = meter(image)
        cases.append(
            {
                "case": case,
                "variant": variant,
                "pixels": f"{image.width}x{image.height}",
                "reference_chars": len(normalised(reference)),
                "cer": round(cer(reference, found.text), 4),
                "word_recall": round(word_recall(reference, found.text), 4),
                "confidence": round(found.confidence, 1),
                "cpu_seconds": round(meter.cpu - cpu_before, 3),
            }
        )

    for name, file_name in TEXT_PDFS.items():
        for dpi in (150, 300):
            image, reference = rendered(DEMO_FILES / file_name, dpi)
            measure(f"pdf-{name}-{dpi}dpi", f"clean {dpi} dpi", image, reference)
    text = paragraphs()
    reference = " ".join(text)
    for font_name, font_path in FONTS.items():
        if not Path(font_path).exists():
            continue
        for dpi in (150, 300):
            measure(f"drawn-{font_name}-{dpi}dpi", f"clean {dpi} dpi", drawn_page(font_path, dpi, text), reference)
        page = drawn_page(font_path, 300, text)
        measure(f"drawn-{font_name}-300dpi-skewed", f"skewed {SKEW_DEGREES} degrees", skewed(page), reference)
        measure(f"drawn-{font_name}-300dpi-noisy", "noisy", noisy(page), reference)
        measure(f"drawn-{font_name}-300dpi-skewed-noisy", "skewed and noisy", noisy(skewed(page)), reference)
    return cases


def corpus_cases(meter: Meter) -> list[dict[str, Any]]:
    """The corpus's image-only PDFs through extraction with OCR, as the handler reads them."""
    expected = json.loads((CORPUS / "EXPECTED.json").read_text(encoding="utf-8"))
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # the broken files' repair notes are not results
    cases = []
    for name in sorted(name for name, entry in expected.items() if entry["expect"] == "no-text"):
        pages_before = meter.pages
        try:
            extracted = extract_text(
                (CORPUS / name).read_bytes(),
                key=name,
                declared_content_type=None,
                limits=ExtractLimits(),
                ocr=Ocr(OcrOptions(), meter),
            )
            pages = {page.number: page for page in extracted.pages}
            outcome = "text"
        except Exception as error:  # noqa: BLE001  (the outcome is what the benchmark reports)
            pages, outcome = {}, str(getattr(error, "code", type(error).__name__))
        entry: dict[str, Any] = {"file": name, "outcome": outcome, "pages_read_by_ocr": meter.pages - pages_before}
        transcripts = {page: text for (file, page), text in CORPUS_TRANSCRIPTS.items() if file == name}
        for number, reference in transcripts.items():
            found = pages[number].text if number in pages else ""
            entry[f"page_{number}"] = {
                "reference_chars": len(normalised(reference)),
                "cer": round(cer(reference, found), 4),
                "word_recall": round(word_recall(reference, found), 4),
            }
        if not transcripts:
            entry["chars_found"] = sum(len(page.text) for page in pages.values())
        cases.append(entry)
    return cases


def text_layer_cost() -> dict[str, Any]:
    """A text-layer document with OCR on and off: the same time, and the engine never called."""
    data = (DEMO_FILES / "pdfjs-tracemonkey-14-pages-two-column.pdf").read_bytes()
    calls: list[int] = []
    read = tesseract_reader(OcrOptions())

    def counting(image: Image.Image) -> OcrText:
        calls.append(1)
        return read(image)

    seconds: dict[str, float] = {}
    for label, ocr in (("ocr_off", None), ("ocr_on", Ocr(OcrOptions(), counting))):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            extract_text(data, key="tracemonkey.pdf", declared_content_type=None, limits=ExtractLimits(), ocr=ocr)
            best = min(best, time.perf_counter() - started)
        seconds[label] = round(best, 3)
    return {
        "file": "tracemonkey.pdf (14 pages, every one with a text layer)",
        "seconds": seconds,
        "pages_ocr": len(calls),
    }


class RssSampler:
    """The peak resident set of this process's descendants, by process name, and of their sum, every 10 ms."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.01):
            total = 0
            for process in me.children(recursive=True):
                try:
                    rss = process.memory_info().rss
                    name = "tesseract" if "tesseract" in process.name() else "extraction child"
                except psutil.Error:
                    continue
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
                total += rss
            self.peak_total = max(self.peak_total, total)


def sandboxed(path: Path, key: str, memory_mb: int) -> dict[str, Any]:
    with RssSampler() as sampler:
        started = time.perf_counter()
        extracted = extract_file(
            str(path),
            key=key,
            declared_content_type=None,
            limits=ExtractLimits(),
            timeout_seconds=600,
            memory_mb=memory_mb,
            ocr=OcrOptions(),
        )
        seconds = time.perf_counter() - started
    mib = 1024 * 1024
    return {
        "pages_ocr": extracted.ocr_pages,
        "seconds": round(seconds, 2),
        "peak_rss_mib": {name: round(rss / mib) for name, rss in sorted(sampler.peaks.items())},
        "peak_rss_sum_mib": round(sampler.peak_total / mib),
    }


def memory_cases(workdir: Path) -> dict[str, Any]:
    text = paragraphs()
    page = drawn_page(FONTS["dejavu-serif"], 300, text)
    scan = workdir / "ten-pages.pdf"
    buffer = io.BytesIO()
    page.save(buffer, "PDF", resolution=300, save_all=True, append_images=[page] * 9)
    scan.write_bytes(buffer.getvalue())
    side = int(OcrOptions().max_pixels ** 0.5)
    large = workdir / "at-the-pixel-limit.png"
    drawn_page(FONTS["dejavu-serif"], round(side / LETTER_INCHES[1]), text).resize((side, side)).save(large)
    memory_mb = 1664  # the Lambda function's extraction cap: 2048 MB less the handler's 384 MB
    return {
        "ten_page_scan_300dpi": sandboxed(scan, "ten-pages.pdf", memory_mb),
        f"one_page_{side}x{side}": sandboxed(large, "at-the-pixel-limit.png", memory_mb),
        "memory_cap_mb": memory_mb,
    }


def speed(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Pages per CPU second of OCR (Tesseract's and this process's, rendering excluded), by variant."""
    by_variant: dict[str, list[float]] = {}
    for case in cases:
        by_variant.setdefault(case["variant"], []).append(case["cpu_seconds"])
    return {
        variant: {
            "pages": len(seconds),
            "cpu_seconds": round(sum(seconds), 2),
            "pages_per_second_per_core": round(len(seconds) / sum(seconds), 3),
        }
        for variant, seconds in sorted(by_variant.items())
    }


def summary(cases: list[dict[str, Any]]) -> dict[str, float]:
    by_variant: dict[str, list[float]] = {}
    for case in cases:
        by_variant.setdefault(case["variant"], []).append(case["cer"])
    return {variant: round(max(values), 4) for variant, values in sorted(by_variant.items())}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None).parse_args(argv)
    quality = quality_cases(Meter())
    per_page = speed(quality)
    corpus = corpus_cases(Meter())
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as workdir:
        memory = memory_cases(Path(workdir))
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "tesseract": tesseract_version()},
        "worst_cer_by_variant": summary(quality),
        "quality": quality,
        "speed": per_page,
        "corpus_image_only_pdfs": corpus,
        "text_layer_documents": text_layer_cost(),
        "memory": memory,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({key: result[key] for key in ("worst_cer_by_variant", "speed", "memory")}, indent=2))
    print(f"written to {RESULTS}")


def tesseract_version() -> str:
    import pytesseract

    return str(pytesseract.get_tesseract_version())


if __name__ == "__main__":
    main()
