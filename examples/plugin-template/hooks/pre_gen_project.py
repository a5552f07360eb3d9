"""Refuse a name that cannot be an entry point and a module at once, before anything is written."""

import re
import sys

NAME = "{{ cookiecutter.name }}"

if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", NAME):
    sys.exit(f"name {NAME!r}: use lowercase letters and digits in words joined by single hyphens, e.g. my-plugin")
