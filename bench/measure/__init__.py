"""What happens inside a timed round: the rounds and their sizing (:mod:`.rounds`), the
contention guard, memory and energy figures (:mod:`.energy`), the canary that checks the
machine's speed (:mod:`.canary`), and the row a case records."""
