#!/usr/bin/env python3
"""The stated minimum Rust version (Cargo.toml's rust-version) must be at
least every locked dependency's own rust-version on this platform: else
the committed Cargo.lock cannot build with it. (CI has one toolchain, so
this checks the lock's side; sluice's own use of newer std APIs is left to
clippy's incompatible_msrv lint, which reads rust-version.)"""
import json, subprocess, sys

meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked",
     "--filter-platform", "x86_64-unknown-linux-gnu"]))
def v(s):
    parts = [int(x) for x in s.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
root = next(p for p in meta["packages"] if p["id"] == meta["resolve"]["root"])
stated = root.get("rust_version")
used = {n["id"] for n in meta["resolve"]["nodes"]}
need = max(((p["rust_version"], p["name"] + " " + p["version"]) for p in meta["packages"]
            if p["id"] in used and p.get("rust_version") and p["id"] != root["id"]),
           key=lambda x: v(x[0]))
print(f"rust-version {stated}; the lock needs {need[0]} ({need[1]})")
if not stated or v(stated) < v(need[0]):
    sys.exit(f"Cargo.toml's rust-version {stated} is below what the lock needs: {need[0]} ({need[1]})")
