"""The prompts of each stage, in the spirit of Agentless's (the answers' formats are what the parsers read)."""

from __future__ import annotations

__all__ = ["edit_locations", "file_localization", "related_elements", "repair", "reproduction"]

_ISSUE = "### GitHub Problem Description ###\n{problem}\n\n"

FILE_LOCALIZATION = _ISSUE + """###

Below is the structure of the repository:
### Repository Structure ###
{tree}
###

Please list the files that one would need to edit to fix the problem, most important first, at most {n}.
Return only full paths relative to the repository root, one per line, wrapped in ```:
```
path/to/file1.py
path/to/file2.py
```
"""

RELATED_ELEMENTS = _ISSUE + """### Skeleton of Relevant Files ###
{skeletons}
###

Please identify all locations that need inspection or editing to fix the problem: classes, functions,
methods and global variables. For each file, give its path and then one location per line:
```
full/path/file.py
class: MyClass
function: my_function
function: MyClass.my_method
variable: MY_CONSTANT
```
Return only the locations, wrapped in ```.
"""

EDIT_LOCATIONS = _ISSUE + """###
{code}
###

Please name the precise places that need to be edited to fix the problem: class names, function or method
names, or exact line numbers. For each file, give its path and then one location per line:
```
full/path/file.py
function: MyClass.my_method
line: 24
```
Return only the locations, wrapped in ```.
"""

REPAIR = """We are currently solving the following issue within our repository. Here is the issue text:
--- BEGIN ISSUE ---
{problem}
--- END ISSUE ---

Below are segments of code files relevant to the issue (line numbers are for reference only).
--- BEGIN FILE ---
{code}
--- END FILE ---

Please first localize the bug from the issue text, then write *SEARCH/REPLACE* edits to fix it. Every
*SEARCH/REPLACE* edit must use this format:
1. The file path, after ###
2. The start of the search block: <<<<<<< SEARCH
3. A contiguous chunk of lines to search for in the existing source code (without the line numbers)
4. The dividing line: =======
5. The lines to replace into the source code
6. The end of the replace block: >>>>>>> REPLACE

For example:
```python
### mathweb/flask/app.py
<<<<<<< SEARCH
from flask import Flask
=======
import math
from flask import Flask
>>>>>>> REPLACE
```
Indent the replacement exactly as the code it replaces; wrap each edit in ```python ... ```.
"""

REPRODUCTION = _ISSUE + """###

Write a standalone Python script that reproduces the issue with the repository's code (run from the
repository root, so its packages import directly). The script must:
1. print "Issue reproduced" if the described problem occurs,
2. print "Issue resolved" if the code behaves as the issue expects,
3. print "Other issues" if anything else goes wrong (catch exceptions for that).
Wrap the whole script in ```python ... ```.
"""


def file_localization(problem: str, tree: str, n: int) -> str:
    return FILE_LOCALIZATION.format(problem=problem, tree=tree, n=n)


def related_elements(problem: str, skeletons: dict[str, str]) -> str:
    text = "\n".join(f"### File: {path} ###\n{body}\n" for path, body in skeletons.items())
    return RELATED_ELEMENTS.format(problem=problem, skeletons=text)


def edit_locations(problem: str, snippets: dict[str, str]) -> str:
    text = "\n".join(f"### {path}\n{body}\n" for path, body in snippets.items())
    return EDIT_LOCATIONS.format(problem=problem, code=text)


def repair(problem: str, snippets: dict[str, str]) -> str:
    text = "\n".join(f"### {path}\n{body}" for path, body in snippets.items())
    return REPAIR.format(problem=problem, code=text)


def reproduction(problem: str) -> str:
    return REPRODUCTION.format(problem=problem)
