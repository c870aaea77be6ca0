-- Where a chunk's text came from: `text` (a text layer, or a text format) or `ocr` (read from an image
-- by Tesseract), and for OCR the engine's mean word confidence (0-100) on the chunk's page (docs/ocr.md).
-- Added on the partitioned table, so every area has them, those attached later included; merges copy
-- them like any stored column. A constant default and no CHECK constraint keep this to a catalogue
-- change: no area is rewritten or scanned under the lock, and existing chunks read as `text`.
ALTER TABLE chunks ADD COLUMN origin text NOT NULL DEFAULT 'text';
ALTER TABLE chunks ADD COLUMN ocr_confidence real;

-- How many of the document's pages OCR read (those where it found nothing included); 0 for text files.
ALTER TABLE documents ADD COLUMN ocr_pages integer NOT NULL DEFAULT 0;
