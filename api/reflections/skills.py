"""Skill names, normalised so that insights count "JS", "javascript" and "Java Script." once.

The rules, in order:

1. Unicode is folded to its compatibility form (NFKC) and to lower case (`casefold`).
2. Underscores and dashes become spaces ("problem-solving" → "problem solving").
3. Characters other than letters, digits, spaces and `+ # . / &` are dropped, so quotes,
   brackets, commas and exclamation marks never split one skill in two; `+`, `#`, `.`, `/`
   and `&` stay because they carry meaning ("c++", "c#", "node.js", "ci/cd", "r&d").
   Trailing dots and slashes, and leading slashes, are trimmed ("communication." →
   "communication"; ".net" keeps its dot).
4. Runs of spaces become one space.
5. A trailing " skill" or " skills" is dropped ("communication skills" → "communication").
6. The whole name is looked up in `SYNONYMS` below (after rule 5, so "js skills" is found
   too); a hit is replaced by its canonical name.
7. The result is cut to 100 characters.

A name with no letter or digit left normalises to the empty string; the step's schema
refuses it.
"""

from __future__ import annotations

import re
import unicodedata

MAX_SKILL_LENGTH = 100

# Common abbreviations and spellings → one canonical name. Keep the keys already
# normalised by rules 1-5, and the values too (the table is applied once, not repeatedly).
SYNONYMS: dict[str, str] = {
    # programming languages and runtimes
    "js": "javascript",
    "java script": "javascript",
    "ecmascript": "javascript",
    "ts": "typescript",
    "py": "python",
    "python3": "python",
    "python 3": "python",
    "golang": "go",
    "cpp": "c++",
    "c plus plus": "c++",
    "c sharp": "c#",
    "csharp": "c#",
    "dotnet": ".net",
    "dot net": ".net",
    "node": "node.js",
    "nodejs": "node.js",
    "node js": "node.js",
    "reactjs": "react",
    "react.js": "react",
    "react js": "react",
    "vuejs": "vue",
    "vue.js": "vue",
    # platforms and tools
    "k8s": "kubernetes",
    "kube": "kubernetes",
    "postgres": "postgresql",
    "psql": "postgresql",
    "amazon web services": "aws",
    "gcp": "google cloud",
    "google cloud platform": "google cloud",
    "ms excel": "excel",
    "microsoft excel": "excel",
    "ci cd": "ci/cd",
    "cicd": "ci/cd",
    # fields
    "ml": "machine learning",
    "ai": "artificial intelligence",
    "nlp": "natural language processing",
    "ux": "user experience",
    "ui": "user interface",
    "front end": "frontend",
    "back end": "backend",
    "fullstack": "full stack",
    # people skills
    "communications": "communication",
    "comms": "communication",
    "team work": "teamwork",
    "team player": "teamwork",
    "working in a team": "teamwork",
    "presentations": "presentation",
    "presenting": "presentation",
    "interview": "interviewing",
    "interviews": "interviewing",
    "leading": "leadership",
    "stakeholder mgmt": "stakeholder management",
    "time mgmt": "time management",
    "project mgmt": "project management",
    "pm": "project management",
}

_DASHES = re.compile(r"[_\-\u2010-\u2015]+")
_DROPPED = re.compile(r"[^\w\s+#./&]|_")
_SPACES = re.compile(r"\s+")
_SUFFIX = re.compile(r"\s+skills?$")


def normalise_skill(name: str) -> str:
    """The canonical form of a skill name (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = _DASHES.sub(" ", text)
    text = _DROPPED.sub("", text)
    text = _SPACES.sub(" ", text).strip().rstrip("./").lstrip("/").strip()
    stripped = _SUFFIX.sub("", text)
    if stripped:
        text = stripped
    text = SYNONYMS.get(text, text)
    return text[:MAX_SKILL_LENGTH].strip()


def has_letter_or_digit(name: str) -> bool:
    return any(character.isalnum() for character in normalise_skill(name))
