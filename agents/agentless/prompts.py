"""The prompts of each stage, in osca's own words.

Each prompt asks for the format its parser reads (`repo.parse_file_list`, `repo.parse_locations`,
`edits.parse_edits`, `selectors.extract_code`). None carries a worked example: a small model copies an example's
file and code instead of editing the code it was shown (issue 14); the repair prompt describes its edit format in
words and names a real path of the code shown. Code sections are headed "### <path>", the same line an edit
starts with, so a model that echoes a heading still writes a valid edit.
"""

from __future__ import annotations

__all__ = ["edit_locations", "file_localization", "related_elements", "repair", "reproduction"]

_ISSUE = "Issue to fix in this Python repository:\n<issue>\n{problem}\n</issue>\n\n"

FILE_LOCALIZATION = _ISSUE + """Python files of the repository (tests left out; when the repository is large, only \
the files closest to the issue):
<files>
{tree}
</files>

Which of these files must change to fix the issue? Write at most {n} paths, most likely first, one per line, \
inside a ``` block. Write each path in full from the repository root, as the tree above spells it.
"""

RELATED_ELEMENTS = _ISSUE + """Outlines of the files that may hold the bug (signatures only, bodies left out):
{skeletons}

Which classes, functions and methods must be read or changed to fix the issue? Inside a ``` block, write a \
file's path on a line of its own, then one line for each of its definitions: `class: NAME`, `function: NAME` or \
`function: CLASS.METHOD`. Name only definitions that appear in the outlines.
"""

EDIT_LOCATIONS = _ISSUE + """Code that may hold the bug, each line with its number:
{code}

Where exactly must the code change? Inside a ``` block, write a file's path on a line of its own, then one line \
for each place to change: `function: NAME`, `function: CLASS.METHOD`, `class: NAME`, or `line: NUMBER` with the \
numbers shown above.
"""

REPAIR = _ISSUE + """The code that needs the fix, exactly as it stands in the files:
{code}

Fix the issue by editing this code. Write every change as one edit block, which is these lines in this order:
- a line `### ` followed by the file's path, as in the headings above (e.g. `### {path}`)
- a line `<<<<<<< SEARCH`
- the lines to change, copied exactly from the code above, indentation included
- a line `=======`
- the lines that take their place
- a line `>>>>>>> REPLACE`
Put each edit block in its own ```python fence. Keep the edits small: change only what the fix needs.
"""

REPRODUCTION = _ISSUE + """Write a standalone Python script that tells whether this issue is present in the \
repository's code. It runs from the repository root, so the repository's packages import directly. It must print \
exactly one of these lines:
- Issue reproduced  (the problem described in the issue happens)
- Issue resolved  (the code behaves as the issue expects)
- Other issues  (anything else goes wrong: catch exceptions and print this)
Answer with the whole script in one ```python block.
"""


def _sections(parts: dict[str, str]) -> str:
    return "\n".join(f"### {path}\n{body}\n" for path, body in parts.items())


def file_localization(problem: str, tree: str, n: int) -> str:
    return FILE_LOCALIZATION.format(problem=problem, tree=tree, n=n)


def related_elements(problem: str, skeletons: dict[str, str]) -> str:
    return RELATED_ELEMENTS.format(problem=problem, skeletons=_sections(skeletons))


def edit_locations(problem: str, snippets: dict[str, str]) -> str:
    return EDIT_LOCATIONS.format(problem=problem, code=_sections(snippets))


def repair(problem: str, snippets: dict[str, str]) -> str:
    return REPAIR.format(problem=problem, code=_sections(snippets), path=next(iter(snippets), "path/to/file.py"))


def reproduction(problem: str) -> str:
    return REPRODUCTION.format(problem=problem)
