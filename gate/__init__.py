"""gate: prove a fine-tuned model beats the one it replaces before it ships.

The package is layered so that each layer can be tested without the ones above:

- ``suite``, ``thresholds``, ``results``: typed, schema-checked documents;
- ``data``: JSON Lines / CSV readers that report the file and line of bad rows;
- ``providers``: models behind one protocol (encode texts, fingerprint);
- ``tasks``: per task type, the texts to embed and the raw per-example scores;
- ``metrics``: pure functions from raw scores to numbers;
- ``runner``: reads the suite, runs each kind of task through its runtime (``embedding_runtime``: each
  unique text encoded once per model; ``generative_runtime``: both models' requests on one interleaved
  schedule, through ``dispatch``), then derives metrics, statistics and the verdict;
- ``report``: Jinja2 Markdown; ``cli``: the one error boundary.
"""

__version__ = "0.1.0"
