"""The ``netflow`` domain: flow-based network intrusion detection with FlowTransformer (models.md section 2).

Data path:

* **ingest** (:mod:`.ingest`, readers in :mod:`.records`) reads CSV, CSV.gz or Parquet
  (one file or a glob, any fsspec URL) with polars, validates it against the dataset spec
  in params (required columns, numeric values), and writes
  ``data/raw/netflow/flows.parquet`` in time order. The offline default first writes
  synthetic NetFlow v2 CSVs (:mod:`.synthetic`) and then reads them with the same reader.
* **preprocess** (:mod:`.preprocess`) fits the reference's transforms on training rows
  only: numeric ``log(x - min + 1) / log(range + 1)`` (non-finite and |x| > 1e9 set to 0
  first), top-k categorical levels coded 1..k with 0 for everything else; chronological
  split (train | validation | test, test last); writes one safetensors file per split plus
  ``schema.json``. Windows of W consecutive flows labelled by the last flow are formed on
  the fly by :class:`.data.FlowWindows`, never across a split boundary.

The generic stages reach this package through :mod:`.domain` (the contract of
:mod:`tasks.domains`): single-flow baselines in :mod:`.baselines`, scoring of raw records
in :mod:`.scoring`, the params sections in :mod:`.params`.
"""
