"""Where results live: the row schema (:mod:`.schema`), result files (:mod:`.results`),
the journal that keeps finished cases of a run that dies (:mod:`.journal`), the machine's
identity (:mod:`.machine`), the machine lock (:mod:`.lock`) and atomic writes
(:mod:`.atomic`). Standard library only, plus psutil for the lock's liveness check."""
