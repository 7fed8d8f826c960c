#!/usr/bin/env python3
"""Recomputes the SHA1s of django-cacheops's Lua scripts, as each release
sends them, from the packages published on PyPI.

Usage: scripts/cacheops_shas.py [VERSION ...]   (default: 4.2 to 7.2)

Prints one line per distinct SHA1 with the releases and variants that
produce it; src/script/flags.rs keeps the result as CACHEOPS_SHAS.
"""
import glob
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile

VERSIONS = sys.argv[1:] or ["4.2", "5.0", "5.0.1", "5.1", "6.0", "6.1", "6.2",
                            "7.0", "7.0.1", "7.0.2", "7.1", "7.2"]
STRIP = re.compile(r"TOSTRIP.*/TOSTRIP", re.S)


def variants(code):
    """The texts a release may send for one script file."""
    out = {"as is": code}
    if "REDIS_4" in code or "REDIS_7" in code:
        out = {
            "Redis >= 7": re.sub(r"REDIS_4.*?/REDIS_4", "", code, flags=re.S),
            "Redis < 7": re.sub(r"REDIS_7.*?/REDIS_7", "", code, flags=re.S),
        }
    if "TOSTRIP" in code:
        out["TOSTRIP removed"] = STRIP.sub("", code)
    return out


def main():
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for version in VERSIONS:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--no-binary", ":all:", f"django-cacheops=={version}", "-d", tmp],
                           check=True)
        for path in sorted(glob.glob(os.path.join(tmp, "*.tar.gz"))):
            version = re.search(r"(\d+(?:\.\d+)+)\.tar\.gz$", path).group(1)
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if "/cacheops/lua/" not in member.name or not member.name.endswith(".lua"):
                        continue
                    name = os.path.basename(member.name)[:-4]
                    code = archive.extractfile(member).read().decode()
                    if "conj:" not in code and "schemes" not in code:
                        continue  # declares its keys (lock, unlock)
                    for label, text in variants(code).items():
                        sha = hashlib.sha1(text.encode()).hexdigest()
                        found.setdefault(sha, []).append(f"{version} {name} ({label})")
    for sha, where in found.items():
        print(sha, "|", "; ".join(where))


if __name__ == "__main__":
    main()
