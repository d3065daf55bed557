"""Variant names of bench_local_variants.py -> the settings they change (shared with its latency mode)."""


def settings_for(variant: str, F: object, index: object) -> dict[tuple[object, str], object]:
    """A variant's settings, ``&``-joined: (object, attribute) -> value."""
    out: dict[tuple[object, str], object] = {}
    for part in variant.split("&"):
        if part == "base":
            continue
        if part.startswith("qf"):
            out[(F, "QUERY_FAST_THRESHOLD")] = int(part[2:])
        elif part.startswith("rsl"):
            out[(F, "RESCALED_LEVELS")] = int(part[3:])
        elif part == "rwr":
            out[(F, "RESCALE_WITH_REGIONS")] = True
        elif part == "rs-":
            out[(F, "RESCALED")] = ()
        elif part.startswith("rs"):
            out[(F, "RESCALED")] = tuple(float(x) for x in part[2:].split("+"))
        elif part.startswith("rescan"):
            out[(index, "rescan_lookups")] = int(part[6:])
        elif part.startswith("side"):
            out[(F, "QUERY_LONG_SIDE")] = int(part[4:])
        elif part.startswith("od"):
            out[(F, "_OVERDETECT")] = float(part[2:])
        elif part.startswith("fast"):
            out[(F, "_FAST_THRESHOLD")] = int(part[4:])
        elif part.startswith("rl"):
            out[(index, "region_lookups")] = int(part[2:])
        elif part.startswith("r"):
            out[(index, "radius")] = int(part[1:])
        elif part.startswith("l"):
            out[(index, "query_lookups")] = int(part[1:])
        elif part.startswith("c"):
            out[(index, "candidates")] = int(part[1:])
        elif part.startswith("ee"):
            out[(index, "early_exit")] = int(part[2:])
        else:
            raise SystemExit(f"unknown variant {part!r}")
    return out
