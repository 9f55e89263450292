"""Writing a world: the files it is made of (``files``), one writer per run of
users (``sink``) with its running totals (``stats``), worker processes for
large worlds (``parallel``), and the answer key assembled at the end (``truth``).
"""
