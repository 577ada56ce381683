"""File formats shared by every command: sentence files (``text``) and, in
``transalign.alignment_io``, word-alignment files. Standard library only."""
