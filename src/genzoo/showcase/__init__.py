"""What genzoo shows of its models: the HTML report of run folders (`report`), the whole zoo trained, scored and
reported in a time budget (`demo`, its page `demo_report`, its recipes `zoo`), and the leaderboard (`bench`).

These modules read what runs wrote and what the models can do; no model imports them.
"""
