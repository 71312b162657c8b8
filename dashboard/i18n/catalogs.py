"""Extract the dashboard's user-facing strings with Babel and keep the catalogs in step with them.

    python -m dashboard.i18n.catalogs --check    # exit 1 and list what a catalog misses or no longer uses
    python -m dashboard.i18n.catalogs --update   # add new strings (empty) and drop unused ones, keep the rest

`babel.cfg` next to this file says which files are extracted and how; the test of the catalogs runs the
same extraction, so a string added to a template without a translation fails the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from dashboard.i18n import I18N_DIR, LOCALES

ROOT = I18N_DIR.parents[1]
CONFIG = I18N_DIR / "babel.cfg"
#: The marker for strings translated later (labels of codes, messages chosen at run time).
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None}


def po_path(locale: str) -> Path:
    """Return the .po file of `locale`."""
    return I18N_DIR / locale / "LC_MESSAGES" / "messages.po"


def extract() -> Catalog:
    """Extract every translatable string of the dashboard's Python code and templates."""
    with CONFIG.open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle, str(CONFIG))
    catalog = Catalog(project="SiteSentry dashboard", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)
    ):
        if filename.startswith(("dashboard/", "dashboard\\")) or filename.startswith(("web", "i18n")):
            catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def read(locale: str) -> Catalog:
    """Read the catalog of `locale`."""
    with po_path(locale).open("rb") as handle:
        return read_po(handle, locale=locale)


def problems(template: Catalog, locale: str) -> list[str]:
    """Return what `locale`'s catalog lacks: missing strings, and (except English) empty translations."""
    catalog = read(locale)
    out = []
    for message in template:
        if not message.id:
            continue
        found = catalog.get(message.id, context=message.context)
        if found is None:
            out.append(f"{locale}: missing {message.id!r}")
        elif locale != "en" and (
            not found.string or (isinstance(found.string, tuple) and not all(found.string))
        ):
            out.append(f"{locale}: not translated {message.id!r}")
    return out


def update(template: Catalog) -> None:
    """Merge the extracted strings into every catalog: new ones empty, unused ones dropped."""
    for locale in LOCALES:
        path = po_path(locale)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            catalog = read(locale)
        else:
            catalog = Catalog(locale=locale, project="SiteSentry dashboard", charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        catalog.fuzzy = False  # a new catalog starts fuzzy; its header is ours, not a guess
        with path.open("wb") as handle:
            write_po(handle, catalog, width=110, omit_header=False, sort_output=False, include_lineno=False)


def main() -> None:
    """Check or update the catalogs against the extracted strings."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="list missing or untranslated strings")
    group.add_argument("--update", action="store_true", help="merge new strings into the catalogs")
    args = parser.parse_args()
    template = extract()
    if args.update:
        update(template)
    found = [p for locale in LOCALES for p in problems(template, locale)]
    print("\n".join(found) or f"{len(template)} strings, every catalog complete")
    sys.exit(1 if found and args.check else 0)


if __name__ == "__main__":
    main()
