"""A one-line progress bar redrawn with carriage returns."""
import sys
import time


class ProgressLine:
    def __init__(self, total_steps, stream=sys.stdout, width=24):
        self.total, self.stream, self.width = total_steps, stream, width
        self.last_time = time.perf_counter()

    def update(self, step, loss, tokens):
        """Redraws for `step` (1-based), given the tokens processed since the previous update."""
        now = time.perf_counter()
        rate = tokens / max(now - self.last_time, 1e-9)
        self.last_time = now
        filled = int(self.width * step / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] step {step}/{self.total}  loss {loss:.4f}  {rate:,.0f} tok/s ")
        self.stream.flush()

    def message(self, text):
        """Prints `text` on its own line, leaving the bar to be redrawn below it."""
        self.stream.write("\n" + text + "\n")
        self.stream.flush()
