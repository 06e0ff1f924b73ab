"""The ``finance`` domain: AI-disclosure detection in bank annual reports (FinAI-BERT, models.md section 3).

Data path:

* **ingest** reads two kinds of source, each optional but not both absent:

  - *documents* (``ingest.finance.source``): annual reports as ``.txt``, ``.html`` /
    ``.htm`` and ``.pdf`` (files, folders, globs, any fsspec URL). Text comes from
    :mod:`tasks.domains.finance.text` (stdlib HTML parser without scripts / styles / navigation /
    tables, pypdf for PDFs), is cleaned and split into sentences offline. Institution and
    year come from a sidecar CSV (``file,institution,year``) or from the file name by
    ``name_pattern``. A document that cannot be read (corrupt or encrypted PDF, empty,
    undecodable, HTML with nothing but scripts) is skipped, counted and named in the
    manifest while the others are read (``on_bad_document: error`` stops instead).
  - *labelled sentences* (``ingest.finance.labels``): CSV / Parquet with
    ``sentence,label`` (0/1) and optional metadata (``institution``, ``year``, ``file``).
    A missing column or a label outside {0, 1} is an error naming the file and rows.

  The offline default writes the synthetic corpus (:mod:`tasks.domains.finance.synthetic`) and
  reads it with the same readers; its ground-truth ``labels.csv`` is the labelled source.
  Outputs ``data/raw/finance/{documents,labels}.parquet`` and ``manifest.json``.
* **preprocess** cleans the labelled sentences (NFKC, whitespace), drops repeats
  (case-insensitive, so no sentence lands on both sides of the split; sentences whose
  copies disagree on the label are dropped and counted), splits them stratified 80/20
  with seed 42 as the paper (and 10 % of the training part, stratified, as the validation
  set that picks the best epoch by F1), and tokenizes each split with the encoder's
  WordPiece tokenizer (max length 128). From the documents it exports
  ``candidates.csv`` for annotation: the seed-lexicon AI candidates (after the
  reference's >= 5 words / letter ratio >= 0.5 filter, de-duplicated) and as many sampled
  non-candidates, with an empty ``label`` column. Annotated, that file is a valid
  ``ingest.finance.labels`` source.

Model and stages: the shared train loop fine-tunes :mod:`models.text_encoder` with the
paper's recipe, the pre-trained weights and tokenizer handed to it by :mod:`.encoder` (the
model class reads no file); the baselines are :mod:`.baselines` (the train stage keeps the fitted ones in
``artifacts/finance/baselines/models/``, skops files); evaluation adds the
paper's robustness and interpretability checks (:mod:`.report`, :mod:`.analysis`); scoring
(:mod:`.scoring`) reads documents and writes every sentence's P(AI) plus a per-document
table and plot, or (``score finance --sentences FILE``, :mod:`.sentences`) reads single sentences, one a line
or a table's column, and scores them with the champion or a saved baseline (``--model``), with metrics when
the table has labels. The generic stages reach all of it through :mod:`.domain`; readers are in
:mod:`.sources`, the stages in :mod:`.ingest` and :mod:`.preprocess`, the params in :mod:`.params`.
"""
