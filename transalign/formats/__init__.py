"""File formats shared by every command: sentence files (``text``: lines, CoNLL) and
word-alignment files (``alignments``: pharaoh, id, pharaoh-scores, jsonl). Standard library only."""
