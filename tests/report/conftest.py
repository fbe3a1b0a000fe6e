"""Reading a report page back as a user's eye would: its tables as rows of cell texts."""

from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest


@dataclass
class Table:
    css_class: str
    rows: list[tuple[str, list[str]]] = field(default_factory=list)  # (tr class, cell texts)
    titles: list[str] = field(default_factory=list)  # every title attribute inside it

    def row(self, first_cell: str) -> tuple[str, list[str]]:
        (found,) = [r for r in self.rows if r[1] and r[1][0] == first_cell]
        return found

    def column(self, header: str) -> list[str]:
        head = self.rows[0][1]
        return [cells[head.index(header)] for _, cells in self.rows[1:]]


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: list[Table] = []
        self.open: list[Table] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.open.append(Table(a.get("class") or ""))
        elif not self.open:
            return
        elif tag == "tr":
            self.open[-1].rows.append((a.get("class") or "", []))
        elif tag in ("td", "th"):
            self.cell = []
        if self.open and a.get("title"):
            self.open[-1].titles.append(a["title"])

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.open[-1].rows[-1][1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table" and self.open:
            self.tables.append(self.open.pop())


def parse_tables(page: str) -> list[Table]:
    parser = _Parser()
    parser.feed(page)
    return parser.tables


@pytest.fixture
def tables():
    """tables(page) -> the page's tables in document order (by where each ends)."""
    return parse_tables
