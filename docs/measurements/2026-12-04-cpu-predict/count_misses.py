"""Count the typed digits a net (or a vote) got wrong, from `python -m pipeline.predict`'s lines
on stdin: `typed/<font>-<digit>.png: <answer> ...`."""

import re
import sys

wrong = []
for line in sys.stdin:
    found = re.match(r"\S*?(\w+)-(\d)\.png: (\d)", line.strip())
    if found and found.group(2) != found.group(3):
        wrong.append(f"{found.group(1)} {found.group(2)} read as {found.group(3)}")
print(f"{sys.argv[1]}: {len(wrong)} of 30 typed digits missed: {'; '.join(wrong)}")
